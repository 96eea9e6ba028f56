"""agents.faust_internals.ack_refilled on a stand-in consumer: what Faust's commit needs of an
offset the offset check read directly (issue 13: commits stopped in front of such offsets)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from agents.faust_internals import ack_refilled


class Consumer:
    """The two things ack_refilled touches: Faust's gap tree and `ack`."""

    def __init__(self) -> None:
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self.acked: list[tuple[TP, int]] = []

    def ack(self, message: Any) -> bool:
        assert not message.acked and message.topic == message.tp.topic
        message.acked = True
        self.acked.append((message.tp, message.offset))
        return True


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


def test_an_offset_faust_never_saw_is_acked() -> None:
    app = App()
    for offset in (170, 171, 172):
        ack_refilled(app, "orders", 2, offset)  # type: ignore[arg-type]  # a stand-in App
    assert app.consumer.acked == [(TP("orders", 2), 170), (TP("orders", 2), 171), (TP("orders", 2), 172)]


def test_an_offset_faust_holds_as_a_gap_is_not_acked_twice() -> None:
    """Faust counts a gap as acked when it commits; an ack as well would count it twice."""
    app = App()
    app.consumer._gap[TP("orders", 2)].addi(171, 175)  # Faust's gap: offsets 171..174
    for offset in range(170, 176):
        ack_refilled(app, "orders", 2, offset)  # type: ignore[arg-type]  # a stand-in App
    assert [offset for _, offset in app.consumer.acked] == [170, 175]
    ack_refilled(app, "orders", 3, 172)  # type: ignore[arg-type]  # another partition: no gap there
    assert app.consumer.acked[-1] == (TP("orders", 3), 172)


class _Message:
    def __init__(self, partition: int) -> None:
        self.topic = "orders"
        self.partition = partition


class _Event:
    """What Faust's store and DirectTable read of the current event."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


def _in_event(partition: int) -> _Event:
    import weakref

    from faust.streams import _current_event

    event = _Event(partition)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]  # a stand-in event
    return event


def test_direct_table_reads_and_writes_what_fausts_table_does(tmp_path: Any) -> None:
    import asyncio

    asyncio.run(_direct_table_against_fausts(tmp_path))  # the loop Faust binds to is closed after


async def _direct_table_against_fausts(tmp_path: Any) -> None:
    """DirectTable (the worker's table path with librdkafka) against Faust's own table on the
    same RocksDB: each reads what the other wrote, in the current event's partition only, and
    every write and delete hands its changelog record to the table's send_changelog first."""
    import faust
    import pytest

    from agents.changelog import Changelog
    from agents.faust_internals import DirectTable, partition_items, write_changelog_through

    app = faust.App("direct-table-test", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("states", default=None, partitions=4, key_type=bytes, value_type=bytes)
    changelog = Changelog(producer=None)  # type: ignore[arg-type]  # never drained here: nothing is produced
    write_changelog_through(table, changelog)  # as the worker does with librdkafka
    topic = table.changelog_topic.get_topic_name()
    direct = DirectTable(table)

    with pytest.raises(TypeError, match="outside an event"):
        direct.get(b"k")
    kept = _in_event(2)
    direct[b"order-1"] = b"state-1"
    assert direct.get(b"order-1") == b"state-1"
    assert table.get(b"order-1") == b"state-1"  # Faust's own read of the same partition
    table.data[b"order-2"] = b"state-2"  # Faust's store (its table's write would also reach for the consumer)
    assert direct.get(b"order-2") == b"state-2"
    assert direct.get(b"absent") is None
    kept = _in_event(3)
    assert direct.get(b"order-1") is None  # another partition's database
    direct[b"order-1"] = b"elsewhere"
    kept = _in_event(2)
    del direct[b"order-2"]
    assert direct.get(b"order-2") is None
    assert table.get(b"order-2") is None
    assert dict(partition_items(table, 2)) == {b"order-1": b"state-1"}
    assert dict(partition_items(table, 3)) == {b"order-1": b"elsewhere"}
    assert changelog.written == 3  # DirectTable's writes, in the changelog's pending records
    assert changelog._pending == {
        (topic, 2, b"order-1"): b"state-1",
        (topic, 2, b"order-2"): None,  # the last value of a key in a batch: the delete
        (topic, 3, b"order-1"): b"elsewhere",
    }
    del kept
    table.data._dbs.clear()  # type: ignore[attr-defined]  # Faust's store keeps them open until its stop; this app never starts


def test_direct_table_writes_wait_for_one_write_batch_per_partition(tmp_path: Any) -> None:
    import asyncio

    asyncio.run(_waiting_writes(tmp_path))


async def _waiting_writes(tmp_path: Any) -> None:
    """With the changelog holding the local writes (the worker with librdkafka): a write is
    read back at once but reaches RocksDB only with its batch (or a scan's `write_local`),
    one WriteBatch per partition, before the batch's changelog records are produced; a
    database that refuses its batch fails the batch, and nothing of it is produced."""
    import asyncio

    import faust
    import pytest

    from agents.changelog import NOT_WAITING, Changelog, LocalWriteError
    from agents.faust_internals import DirectTable, partition_items, write_changelog_through
    from tests.agents.test_changelog import StandIn

    app = faust.App("waiting-writes-test", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("states", default=None, partitions=4, key_type=bytes, value_type=bytes)
    producer = StandIn()
    changelog = Changelog(producer)  # type: ignore[arg-type]  # the stand-in has what it uses
    write_changelog_through(table, changelog, local=True)
    topic = table.changelog_topic.get_topic_name()
    direct = DirectTable(table, changelog)

    kept = _in_event(2)
    table.data[b"order-0"] = b"before"  # already in RocksDB
    direct[b"order-1"] = b"state-1"
    direct[b"order-1"] = b"state-1b"
    del direct[b"order-0"]
    assert direct.get(b"order-1") == b"state-1b" and direct.get(b"order-0") is None  # read through the waiting writes
    assert dict(partition_items(table, 2)) == {b"order-0": b"before"}  # RocksDB itself: nothing written yet
    kept = _in_event(3)
    assert direct.get(b"order-1") is None  # another partition's
    direct[b"order-1"] = b"elsewhere"
    assert changelog.waiting(topic, 3, b"order-1") == b"elsewhere"

    futures = changelog.drain()
    assert changelog.local_batches == 2  # one per partition written
    assert dict(partition_items(table, 2)) == {b"order-1": b"state-1b"}
    assert dict(partition_items(table, 3)) == {b"order-1": b"elsewhere"}
    assert sorted((p, k, v) for _, k, v, p in producer.sent) == [
        (2, b"order-0", None),
        (2, b"order-1", b"state-1b"),
        (3, b"order-1", b"elsewhere"),
    ]
    producer.deliver()
    await asyncio.gather(*futures)

    direct[b"order-2"] = b"state-2"  # partition 3: what a scan must see
    changelog.write_local()
    assert dict(partition_items(table, 3)) == {b"order-1": b"elsewhere", b"order-2": b"state-2"}
    assert changelog.waiting(topic, 3, b"order-2") is NOT_WAITING  # written: read from RocksDB now
    assert direct.get(b"order-2") == b"state-2"

    class Refusing:
        def write(self, batch: Any) -> None:
            raise OSError("disk full")

    changelog._databases[topic] = lambda partition: Refusing()
    direct[b"order-3"] = b"state-3"
    sent = len(producer.sent)
    (failed,) = changelog.drain()
    with pytest.raises(LocalWriteError, match=r"states-changelog\[3\] \(OSError: disk full\)"):
        await failed
    assert len(producer.sent) == sent and len(changelog) == 0  # not produced: never recorded as persisted
    del kept
    table.data._dbs.clear()  # type: ignore[attr-defined]  # Faust's store keeps them open until its stop


class _Committing:
    """Faust's consumer as commit_offsets sees it: `_commit_offsets` records the offsets in
    its books whether or not the broker took them (faust-streaming 0.15.3)."""

    def __init__(self, succeed: bool) -> None:
        self.succeed = succeed
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        self._committed_offset.update(offsets)
        return self.succeed


def test_a_failed_commit_leaves_fausts_books_as_they_were() -> None:
    import asyncio

    from agents.faust_internals import commit_offsets

    for succeed in (True, False):
        app = App()
        app.consumer = _Committing(succeed)  # type: ignore[assignment]  # a stand-in consumer
        app.consumer._committed_offset[TP("orders", 1)] = 40  # type: ignore[attr-defined]
        done = asyncio.run(commit_offsets(app, {("orders", 1): 57, ("orders", 2): 9}))  # type: ignore[arg-type]
        books = app.consumer._committed_offset  # type: ignore[attr-defined]
        assert done is succeed
        if succeed:
            assert (books[TP("orders", 1)], books[TP("orders", 2)]) == (57, 9)
        else:  # the broker has 40 and nothing: so must the books, or the catch-up never retries
            assert (books[TP("orders", 1)], books[TP("orders", 2)]) == (40, None)


class _Unstarted:
    """What the table manager asks of a consumer before anything is assigned."""

    def assignment(self) -> set[TP]:
        return set()

    def pause_partitions(self, tps: set[TP]) -> None:
        assert tps == set()


def test_the_worker_registers_its_tables_without_fausts_one_second_sleep(tmp_path: Any) -> None:
    import asyncio

    asyncio.run(_table_manager_start(tmp_path))


async def _table_manager_start(tmp_path: Any) -> None:
    """The worker's app starts its table manager at once: the changelogs are registered (what
    the conductor waits for before it subscribes) and the recovery started, with no sleep.
    Faust's own `TableManager.on_start` sleeps 1 s first: this test fails with it."""
    from agents.app import _app
    from agents.faust_internals import TableManager
    from clearance.settings import Settings

    app = _app(Settings().with_overrides(data_dir=str(tmp_path)))
    table = app.Table("states", default=None, partitions=4, key_type=bytes, value_type=bytes)
    assert type(app.tables) is TableManager
    manager: Any = app.tables
    slept: list[float] = []
    started: list[bool] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def start() -> None:
        started.append(True)

    manager.sleep = sleep
    manager.recovery.start = start
    app.consumer = _Unstarted()  # type: ignore[assignment]  # a stand-in: Faust's own would start a thread's loop
    await manager.on_start()
    assert manager._tables_registered.is_set()  # what `wait_until_tables_registered` waits for
    assert slept == [] and started == [True]
    assert table in manager._channels  # its changelog channel, which the conductor subscribes to
    table.data._dbs.clear()  # type: ignore[attr-defined]  # this app never starts: nothing to close


class _Clock:
    """`time` for the assignor's hold: sleeping moves the clock on, and nothing else does."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


class _Probe:
    """A GroupProbe whose broker says the group is rebalancing from `after` s of the hold on."""

    def __init__(self, clock: _Clock, after: float) -> None:
        self.clock, self.after = clock, after
        self.began: float | None = None
        self.asked = self.closed = self.connected = 0

    def connect(self) -> None:
        self.connected += 1

    def rebalancing(self, timeout_s: float) -> bool:
        assert timeout_s > 0
        self.asked += 1
        self.clock.now += 0.002  # an answer's round trip
        if self.began is None:
            self.began = self.clock.now
        return self.clock.now - self.began >= self.after

    def close(self) -> None:
        self.closed += 1


def test_a_leader_holds_its_first_assignment_while_processes_started_with_it_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group's first assignment, made with fewer members than `clearance worker --processes`
    started, waits up to `hold_s` first (so a sibling's JoinGroup restarts the rebalance before any
    partition is taken), once per process; with every sibling there, or alone, it does not."""
    from faust.assignor import PartitionAssignor as FaustPartitionAssignor

    from agents.faust_internals import PartitionAssignor, assignor_for

    clock = _Clock()
    assigned: list[int] = []
    monkeypatch.setattr("agents.faust_internals.time", clock)

    def faust_assign(self: Any, cluster: Any, members: dict[str, Any]) -> dict[str, Any]:
        assigned.append(len(members))
        return {}

    monkeypatch.setattr(FaustPartitionAssignor, "assign", faust_assign)

    two = assignor_for(2)
    assert issubclass(two, PartitionAssignor) and two.siblings == 2 and PartitionAssignor.siblings == 1
    leader = object.__new__(two)  # Faust's constructor needs a running app; `assign` reads none of it
    leader.assign(None, {"a": 1})
    leader.assign(None, {"a": 1})  # a later rebalance with a member missing: not held again
    assert clock.slept == pytest.approx(two.hold_s) and 0 < two.hold_s <= 0.5 and assigned == [1, 1]

    clock.slept = 0.0
    complete = object.__new__(two)
    complete.assign(None, {"a": 1, "b": 2})
    complete.assign(None, {"a": 1})  # its first assignment had them all: never held
    alone = object.__new__(assignor_for(1))
    alone.assign(None, {"a": 1})
    assert clock.slept == 0 and assigned == [1, 1, 2, 1, 1]


def test_the_hold_ends_once_the_broker_says_another_member_is_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a probe (agents/group.py), the hold ends at the first answer that says the group is
    rebalancing again, not at `hold_s`; a probe that never says so leaves the whole hold. Either
    way the probe is closed after the hold."""
    from faust.assignor import PartitionAssignor as FaustPartitionAssignor

    from agents.faust_internals import assignor_for

    clock = _Clock()
    monkeypatch.setattr("agents.faust_internals.time", clock)
    monkeypatch.setattr(FaustPartitionAssignor, "assign", lambda self, cluster, members: {})

    soon = _Probe(clock, after=0.03)
    began = clock.now
    object.__new__(assignor_for(2, soon)).assign(None, {"a": 1})
    held = clock.now - began
    assert 0.03 <= held < 0.05 and soon.asked >= 2 and soon.closed == 1

    never = _Probe(clock, after=10.0)
    began = clock.now
    object.__new__(assignor_for(2, never)).assign(None, {"a": 1})
    held = clock.now - began
    hold_s = assignor_for(2).hold_s
    assert hold_s <= held < hold_s + 0.01 and never.closed == 1

    unneeded = _Probe(clock, after=0.0)
    object.__new__(assignor_for(2, unneeded)).assign(None, {"a": 1, "b": 2})
    assert unneeded.asked == 0 and unneeded.closed == 1, "every sibling is there: no question, no hold"


def test_a_process_that_joined_as_a_follower_never_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose first generation came as a follower (its assignor only told of its share)
    has started: leading a later rebalance with a member missing (a sibling died) is not held,
    and its probe's client is gone after that first generation."""
    from faust.assignor import PartitionAssignor as FaustPartitionAssignor

    from agents.faust_internals import assignor_for

    clock = _Clock()
    monkeypatch.setattr("agents.faust_internals.time", clock)
    monkeypatch.setattr(FaustPartitionAssignor, "assign", lambda self, cluster, members: {})
    told: list[object] = []
    monkeypatch.setattr(FaustPartitionAssignor, "on_assignment", lambda self, assignment: told.append(assignment))

    probe = _Probe(clock, after=10.0)
    follower = object.__new__(assignor_for(2, probe))
    follower.on_assignment("its share")
    assert told == ["its share"] and probe.closed == 1
    follower.assign(None, {"a": 1})
    assert clock.slept == 0 and probe.asked == 0
