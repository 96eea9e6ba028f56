"""Every use of Faust's private names, in one place: a Faust upgrade touches this file only.

Verified against faust-streaming 0.15.3 (with mode-streaming 0.7.1). Each function says
which private name it reads and why no public one serves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import faust
from aiokafka.structs import TopicPartition as AIOTopicPartition
from faust.assignor import PartitionAssignor as FaustPartitionAssignor
from faust.streams import current_event
from faust.tables import TableManager as FaustTableManager
from faust.types import TP

from agents.changelog import NOT_WAITING, Changelog
from agents.deadline import StopDeadline
from agents.producer import Delivered
from agents.restore import Part

Restore = Callable[[list[Part], threading.Event, float], dict[tuple[str, int], int]]

log = logging.getLogger("clearance.worker")


def partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of one partition of a rocksdb:// table.

    Faust has no public per-partition iteration; its RocksDB store keeps one DB per
    partition (`_db_for_partition`) and hides its offset key in `_visible_items`.
    """
    store = table.data
    db = store._db_for_partition(partition)
    for key, value in store._visible_items(db):
        if isinstance(key, bytes) and isinstance(value, bytes):
            yield key, value


def open_databases(table: Any) -> list[Any]:
    """The RocksDB databases a rocksdb:// table has open now, one per partition (`Store._dbs`:
    no public accessor; agents/stores.py reads their memory figures)."""
    return list(getattr(table.data, "_dbs", {}).values())


def committed_offset(app: faust.App, topic: str, partition: int) -> int | None:
    """The consumer's last committed offset of a topic partition (`Consumer._committed_offset`)."""
    offsets: dict[TP, int | None] = getattr(app.consumer, "_committed_offset", {})
    return offsets.get(TP(topic, partition))


async def commit_offsets(app: faust.App, offsets: dict[tuple[str, int], int]) -> bool:
    """Commit these offsets now, in the group and in Faust's books (`Consumer._commit_offsets`).

    Faust's public `Consumer.commit` commits only what its own acked list allows (see
    agents/commits.py for when that stalls); `_commit_offsets` is the step after that list:
    it skips partitions no longer assigned, flushes the producer, commits, and records the
    committed offsets so Faust's later commits start from them. It records them even when the
    commit failed (aiokafka's "already rebalanced" is answered False, silently): its books
    then say committed what the broker does not have, and `Commits` (which reads them) would
    see nothing left to commit until the next ack. So a failed commit puts the books back."""
    consumer: Any = app.consumer
    wanted = {TP(t, p): offset for (t, p), offset in offsets.items()}
    books = consumer._committed_offset
    before = {tp: books.get(tp) for tp in wanted}
    done = bool(await consumer._commit_offsets(wanted))
    if not done:
        for tp, offset in before.items():
            if books.get(tp) == wanted[tp]:  # what the failed commit wrote, not a later commit's
                books[tp] = offset
    return done


def track_changelog(table: Any, track: Callable[[Any], None]) -> None:
    """Hand every changelog send of `table` to `track` (its FutureMessage).

    Faust's `Collection._send_changelog` calls `self.send_changelog`, which returns the
    FutureMessage that Faust otherwise drops; an instance attribute wraps it."""
    original = table.send_changelog

    def send_changelog(*args: Any, **kwargs: Any) -> Any:
        future = original(*args, **kwargs)
        track(future)
        return future

    table.send_changelog = send_changelog


def write_changelog_through(table: Any, changelog: Changelog, *, local: bool = False) -> None:
    """Send `table`'s changelog records through `changelog` (agents/changelog.py), not Faust's producer.

    Faust's `Collection._send_changelog` calls `self.send_changelog(partition, key, value,
    ...)` for every write (the partition is the current event's); an instance attribute
    takes its place. Faust's own delivery callback (`_on_changelog_sent`) recorded each
    delivered offset in the table's store (`Store.set_persisted_offset`, where recovery
    starts after a restart that keeps local state); the changelog does that here. With
    `local`, the writes also wait there for one WriteBatch per partition per ack batch into
    the store's database of that partition (`Store._db_for_partition`); the table's
    `DirectTable` then writes nothing itself and reads the waiting writes first."""
    topic = table.changelog_topic.get_topic_name()

    def persist(delivered: Delivered) -> None:
        table.data.set_persisted_offset(TP(delivered.topic, delivered.partition), delivered.offset)

    def database(partition: int) -> Any:
        return table.data._db_for_partition(partition)

    table.send_changelog = changelog.table(topic, persist, database if local else None)


def hold_fetch(app: faust.App, topic: str, partition: int, held: bool) -> bool:
    """Stop (`held`) or restart fetching a stream partition in aiokafka, Faust's Kafka client
    (agents/flow.py); False when its consumer thread is not running.

    Faust runs aiokafka's consumer in a thread of its own (`Consumer._thread`, its event
    loop `thread_loop`, the client `_consumer`), so the change is handed to that loop
    (`call_soon_threadsafe`) and applied there, if the partition is assigned then, with
    aiokafka's public `pause` / `resume`. Why not Faust's public `pause_partitions`: Faust's
    `getmany` drops the rest of a fetched batch of a partition paused while it walks
    through it, past the consumer's position (the soak: 22,465 records in the first 115 pauses,
    read again directly by the offset check); and Faust's stream-buffer flow control
    (`on_buffer_full` / `on_buffer_drop`) makes partitions active again on its own (the
    soak: 68,000 documents arrived in 20 s with every held partition "held"). aiokafka's
    pause keeps its position and drops only what it had fetched and not yet returned (it
    fetches it again after the resume); Faust never pauses there itself, and a rebalance
    gives every assigned partition a fresh, unpaused state."""
    thread: Any = getattr(app.consumer, "_thread", None)
    loop: asyncio.AbstractEventLoop | None = getattr(thread, "thread_loop", None)
    if loop is None or loop.is_closed():
        return False
    loop.call_soon_threadsafe(_hold, thread, AIOTopicPartition(topic, partition), held)
    return True


def last_fetch_ms(app: faust.App, topic: str, partition: int) -> int | None:
    """When Faust's consumer last had a fetch response for a stream partition (wall ms), the
    moment its high watermark (`Consumer.highwater`, public) was last set; None when unknown.

    Faust has no public name for it; aiokafka's public `last_poll_timestamp` has it, on the
    client Faust keeps in its consumer thread (`Consumer._thread._consumer`). Read from this
    thread without a lock: the fetch sets the watermark before the time, so a caller that
    reads the time first and the watermark second never pairs a newer time with an older
    watermark."""
    thread: Any = getattr(app.consumer, "_thread", None)
    consumer: Any = getattr(thread, "_consumer", None)
    if consumer is None:
        return None
    try:
        stamp = consumer.last_poll_timestamp(AIOTopicPartition(topic, partition))
    except Exception:  # noqa: BLE001 - not assigned (a rebalance in between): unknown
        return None
    return int(stamp) if stamp is not None else None


def _hold(thread: Any, tp: AIOTopicPartition, held: bool) -> None:
    """In Faust's consumer thread: aiokafka's pause or resume of `tp`, when assigned and not so already."""
    consumer: Any = getattr(thread, "_consumer", None)
    try:
        if consumer is None or tp not in consumer.assignment() or held == (tp in consumer.paused()):
            return
        if held:
            consumer.pause(tp)
        else:
            consumer.resume(tp)
    except Exception:  # a rebalance in between: the new assignment starts unpaused
        logging.getLogger("clearance.worker.flow").warning("%s[%d]: fetch not changed", tp.topic, tp.partition)


def acked_offsets(app: faust.App) -> int:
    """Acked offsets Faust's consumer keeps until its next commit trims them (`Consumer._acked`,
    one list per partition; no public count). A memory figure of the soak (issue 13)."""
    acked: dict[Any, list[int]] = getattr(app.consumer, "_acked", {})
    return sum(len(offsets) for offsets in list(acked.values()))


class DirectTable:
    """A rocksdb:// table's reads and writes, straight to the current event's RocksDB.

    Faust's `Table.get`/`__setitem__` pass through four layers of its and mode's
    collections (`ManagedUserDict`, `FastUserDict`, `SerializedStore`, `Store`), read a
    key twice (`__contains__`, then `__getitem__`), keep a key-to-partition index and call
    the table's sensors: about a sixth of the join's time in the worker's profile (issue 12).
    This does what they amount to for a raw-bytes, non-windowed table without TTL: the
    partition is the current event's (as Faust's store picks it: `current_event()`; a
    write outside an event is refused as Faust refuses it), the value goes to that
    partition's database (`Store._db_for_partition`, looked up per call: a rebalance
    replaces it), and the changelog record to `table.send_changelog` first, as
    `Table.on_key_set` does (agents/changelog.py when librdkafka produces, so once per key
    per ack batch). Recovery, standbys and the persisted offsets stay Faust's. Left out:
    Faust's check on a table's first write that the source topic has as many partitions as
    the changelog (the worker creates every topic with `CLEARANCE_PARTITIONS`), its sensors,
    and its key-to-partition index (read only where no event names the partition)."""

    def __init__(self, table: Any, changelog: Changelog | None = None) -> None:
        """With `changelog` (where `write_changelog_through(table, changelog, local=True)` sends
        the table's writes), a write waits there for the batch's WriteBatch, and a read looks
        there first (agents/changelog.py); without, each write is a put."""
        self._table = table
        self._store = table.data
        self._changelog = changelog
        self._topic = table.changelog_topic.get_topic_name()

    def _partition(self) -> int:
        event = current_event()
        if event is None:
            raise TypeError("a table is read or written outside an event (faust-streaming #497)")
        return int(event.message.partition)

    def get(self, key: bytes, /) -> bytes | None:
        partition = self._partition()
        if self._changelog is not None:
            waiting = self._changelog.waiting(self._topic, partition, key)
            if waiting is not NOT_WAITING:
                return waiting  # type: ignore[return-value]  # what send_changelog kept: bytes or None
        value = self._store._db_for_partition(partition).get(key)
        return value if value is None or isinstance(value, bytes) else bytes(value)

    def __setitem__(self, key: bytes, value: bytes, /) -> None:
        partition = self._partition()
        self._table.send_changelog(partition, key, value)
        if self._changelog is None:
            self._store._db_for_partition(partition).put(key, value)

    def __delitem__(self, key: bytes, /) -> None:
        partition = self._partition()
        self._table.send_changelog(partition, key, None)
        if self._changelog is None:
            self._store._db_for_partition(partition).delete(key)


def is_recovered(app: faust.App) -> bool:
    """Tables recovered and no rebalance under way (`TableManager.recovery`, `App.rebalancing`)."""
    recovery = getattr(app.tables, "recovery", None)
    return bool(recovery is not None and recovery.completed.is_set() and not app.rebalancing)


def current_position() -> str:
    """topic[partition]@offset of the event the calling task is processing ("-" for none).

    Faust's RocksDB store picks the partition of every table read and write from this
    ambient event, which is why the worker's tracing (CLEARANCE_TRACE_FILE) records it."""
    event = current_event()
    if event is None:
        return "-"
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"


class _Refilled:
    """What `Consumer.ack` reads of a message, for an offset Faust never delivered to the stream."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.tp = TP(topic, partition)
        self.acked = False


def ack_refilled(app: faust.App, topic: str, partition: int, offset: int) -> None:
    """Ack, in Faust's books, an offset the offset check read directly (agents/sequence.py).

    Faust commits the first run of consecutive acked offsets, and commits nothing while the
    smallest acked offset is more than one past its committed offset
    (`Consumer._new_offset`). It counts skipped offsets as acked only when it noticed the
    skip itself (`Consumer._gap`); messages its consumer read but that never reached the
    stream (dropped from the stream buffer around a rebalance) are in neither list, and the
    partition's commits stopped in front of them for good (the scale-out test: 161 offsets
    of one partition never committed). So a refilled offset is acked here, unless Faust
    already holds it as a gap: an ack on top of a gap would count it twice and break the
    run of consecutive offsets."""
    consumer = app.consumer
    tp = TP(topic, partition)
    gaps = getattr(consumer, "_gap", {}).get(tp)
    if gaps is not None and gaps.overlaps(offset):
        return
    consumer.ack(_Refilled(topic, partition, offset))  # type: ignore[arg-type]  # duck-typed: tp, offset, topic, acked


class DeadlineWorker(faust.Worker):
    """Faust's worker with a stop deadline (agents/deadline.py) armed by the first stop signal.

    mode's `Worker._schedule_shutdown` is where both SIGTERM and SIGINT handlers (installed on
    the event loop) start the stop; no public hook runs at that moment."""

    def __init__(self, *args: Any, deadline: StopDeadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_deadline = deadline

    def _schedule_shutdown(self, signal: Any) -> None:
        self.stop_deadline.arm(f"signal {getattr(signal, 'name', signal)}")
        super()._schedule_shutdown(signal)


class TableManager(FaustTableManager):
    """Faust's table manager without the second it sleeps before it registers the tables.

    `TableManager.on_start` sleeps 1 s, then registers every table's changelog channel
    (`_update_channels`, which also finalizes the set of tables) and starts the recovery. The
    conductor subscribes only once that is done (`wait_until_tables_registered`), so every
    start, and every restart after a crash, spent that second idle (benchmarks/RESULTS.md,
    "Start-up"). The sleep lets tables declared while agents start register first; the worker
    declares all its tables before the app starts (agents/app.py `_tables`), so there are none
    to wait for, and a table declared later would fail loudly ("Too late to add tables")."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class PartitionAssignor(FaustPartitionAssignor):
    """Faust's assignor, which holds its first assignment a moment while fewer members have
    joined than the processes started together (`siblings`, from `clearance worker --processes`).

    The broker completes a new group's first join as soon as its first member asks when
    `group.initial.rebalance.delay.ms` is 0 (this project's broker; Kafka's default of 3 s holds
    every start that long). The first of two processes started together then joined alone and
    took every partition; the second began to join 12 to 163 ms later (INFO logs of 20
    starts, 5 December), and the first learnt of it only from its first heartbeat after its assignment
    callback and recovery, ~0.55 s on. It gave half back in a second rebalance, and the second
    process was ready ~0.5 s after the first. Held here (in the consumer's own thread, before the
    leader's SyncGroup), the leader's SyncGroup meets the group already rebalancing once a
    sibling has asked (the broker refuses it, and aiokafka joins again after its 0.1 s
    backoff), so all join the next generation before any partition is opened. Once per process,
    at its start: at the first assignment it makes as the group's leader (the group's first
    generation), and never after it has joined a generation as a follower; a later rebalance
    with a member missing is not held. A sibling later than the hold joins as before, in a
    second rebalance.

    The hold ends early once `probe` (agents/group.py) hears from the broker that the group is
    rebalancing again: the sibling's JoinGroup has arrived, and waiting longer gains nothing.
    Since the supervisor's start gate (agents/processes.py) the siblings join within ~10 ms of
    each other: seldom both in the first generation (1 start of 24), so the hold ends at the first
    answer that says so."""

    hold_s = 0.2  # covers the 163 ms seen without the start gate; at 0.1 one start of four missed it
    siblings = 1
    probe: Any = None  # a GroupProbe, or None: the hold lasts `hold_s`
    poll_s = 0.005  # between the broker's answers (each ~2 ms here)

    _held = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.probe is not None:
            self.probe.connect()  # Faust makes its assignor as the app starts: well before the first join

    def assign(self, cluster: Any, member_metadata: Any) -> Any:
        if not self._held and len(member_metadata) < self.siblings:
            log.info(
                "%d of %d processes in the group: the first assignment waits up to %.2f s for the others",
                len(member_metadata),
                self.siblings,
                self.hold_s,
            )
            held, heard = self._hold()  # the consumer's thread: nothing of it runs meanwhile
            log.info("held %.3f s; %s", held, "another member is joining" if heard else "no other member came")
        self._started()
        return super().assign(cluster, member_metadata)

    def on_assignment(self, assignment: Any) -> None:
        """Every member, at each generation it joins: after the first, this process's start is over."""
        super().on_assignment(assignment)
        self._started()

    def _started(self) -> None:
        """The start is over: no hold from now on (a member that first joined as a follower and
        leads a later rebalance with one missing does not hold either), and the probe's client goes."""
        self._held = True
        if self.probe is not None:
            self.probe.close()

    def _hold(self) -> tuple[float, bool]:
        """Sleep until `hold_s` has passed or the probe says the group is rebalancing: the seconds
        held, and whether the probe said so."""
        began = time.monotonic()
        deadline = began + self.hold_s
        heard = False
        while (left := deadline - time.monotonic()) > 0:
            if self.probe is not None and self.probe.rebalancing(left):
                heard = True
                break
            time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
        return time.monotonic() - began, heard


def assignor_for(siblings: int, probe: Any = None) -> type[PartitionAssignor]:
    """The assignor class for a process started with `siblings` - 1 others in its group; `probe`
    (agents/group.py `GroupProbe`) ends its hold early."""
    return type("PartitionAssignor", (PartitionAssignor,), {"siblings": siblings, "probe": probe})


def before_active_recovery(app: faust.App, restore: Restore) -> None:
    """Run `restore` (blocking, in a thread) on the active changelog partitions before Faust's
    recovery reads them; Faust's recovery starts where it stopped (agents/restore.py).

    Faust's `Recovery._restart_recovery` builds the high watermarks of the active changelog
    partitions (`active_highwaters`: the last offset, -1 when empty), then their start
    offsets (`_build_offsets(consumer, tps, active_offsets, "active")`: the persisted offset
    `_add` read from the store, or the log start), seeks there and reads up to the high
    watermark. The recovery's `_build_offsets` instance attribute is wrapped: for the active
    partitions, `restore` first gets each one's store database (`Store._db_for_partition`,
    `Store.offset_key`, the rocksdb:// store) with the offsets to read, and the last offset
    it wrote goes into `active_offsets` before Faust's own step runs. Faust runs that step
    under `broker_request_timeout` (after which its recovery service stops), so `restore` gets
    half of it; a new rebalance cancels the step, and `restore` is told to stop."""
    recovery: Any = getattr(app.tables, "recovery")  # noqa: B009 - not in TableManagerT
    original = recovery._build_offsets
    budget = float(app.conf.broker_request_timeout) / 2

    async def build_offsets(consumer: Any, tps: Any, destination: Any, title: str) -> Any:
        if title == "active" and tps:
            await _restore_actives(recovery, set(tps), destination, restore, budget)
        return await original(consumer, tps, destination, title)

    recovery._build_offsets = build_offsets


async def _restore_actives(recovery: Any, tps: set[TP], destination: Any, restore: Restore, budget: float) -> None:
    parts = []
    for tp in sorted(tps):
        table = recovery.tp_to_table.get(tp)
        last = recovery.active_highwaters.get(tp)
        store: Any = getattr(table, "data", None)
        if last is None or not hasattr(store, "offset_key") or not hasattr(store, "_db_for_partition"):
            continue  # not a rocksdb:// table: Faust's recovery reads it
        have = destination.get(tp)
        start = 0 if have is None else have + 1
        if last + 1 > start:
            parts.append(
                Part(tp.topic, tp.partition, start, last + 1, store._db_for_partition(tp.partition), store.offset_key)
            )
    if not parts:
        return
    stop = threading.Event()
    try:
        reached = await asyncio.to_thread(restore, parts, stop, budget)
    finally:
        stop.set()  # cancelled by a new rebalance: the thread stops after its batch
        parts.clear()  # no database handle kept: Faust reopens a reassigned partition's database
    for (topic, partition), offset in reached.items():
        destination[TP(topic, partition)] = offset
