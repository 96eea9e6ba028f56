"""The agents' offset guard (agents/sequence.py), without a broker: every offset once, in order."""

from __future__ import annotations

import asyncio

import pytest

from agents.metrics import Metrics
from agents.sender import Msg
from agents.sequence import Sequencer

TOPIC = "orders"


class FakeLog:
    """One topic partition's log (offsets that hold a message) and the group's committed offset."""

    def __init__(self, offsets: list[int], committed: int | None) -> None:
        self.offsets = offsets
        self.committed = committed
        self.reads: list[tuple[int, int]] = []

    async def start_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        start = self.committed if self.committed is not None else min(self.offsets)
        return {tp: start for tp in tps}

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Msg]:
        self.reads.append((start, end))
        return [msg(o) for o in self.offsets if start <= o < end]


def msg(offset: int, partition: int = 0) -> Msg:
    return Msg(TOPIC, partition, offset, b"k", b"%d" % offset)


def handled(sequencer: Sequencer, delivered: list[int]) -> list[int]:
    """The offsets an agent handles, in order, when the consumer delivers `delivered` (as
    agents/stream.py asks: `in_turn` first, `admit` when it says no)."""

    async def run() -> list[int]:
        out: list[int] = []
        for offset in delivered:
            if sequencer.in_turn(msg(offset)):
                out.append(offset)
                continue
            before, admit = await sequencer.admit(msg(offset))
            out += [m.offset for m in before]
            if admit:
                out.append(offset)
        return out

    return asyncio.run(run())


def make(log: FakeLog, metrics: Metrics | None = None) -> Sequencer:
    return Sequencer(
        start_offsets=log.start_offsets,
        read_range=log.read,
        assigned=lambda: [(TOPIC, 0)],
        metrics=metrics or Metrics(),
    )


def test_in_order_delivery_is_handled_as_is_without_extra_reads() -> None:
    log = FakeLog(list(range(100)), committed=40)
    assert handled(make(log), list(range(40, 100))) == list(range(40, 100))
    assert log.reads == []


def test_in_turn_admits_only_the_next_offset_and_changes_nothing_otherwise() -> None:
    log = FakeLog(list(range(100)), committed=40)
    sequencer = make(log)
    assert not sequencer.in_turn(msg(40))  # nothing known before the first admit
    assert handled(sequencer, [40]) == [40]
    assert sequencer.in_turn(msg(41)) and sequencer.next_offset(TOPIC, 0) == 42
    assert not sequencer.in_turn(msg(41))  # a redelivery
    assert not sequencer.in_turn(msg(44))  # a gap
    assert not sequencer.in_turn(msg(42, partition=1))  # another partition, not started
    assert sequencer.next_offset(TOPIC, 0) == 42
    assert handled(sequencer, [44]) == [42, 43, 44]  # admit refills what in_turn left to it


def test_messages_skipped_after_the_committed_offset_are_read_and_handled_first() -> None:
    # What Faust 0.15.3 did after a restart: the first message delivered was committed + 6.
    log = FakeLog(list(range(100)), committed=40)
    metrics = Metrics()
    assert handled(make(log, metrics), list(range(46, 60))) == list(range(40, 60))
    assert log.reads == [(40, 46)]
    assert metrics.counts[("input_gap_messages_refilled", TOPIC)] == 6


def test_handed_is_the_next_offset_except_while_a_read_is_handed_over() -> None:
    """What a waiting flush counts (agents/join.py): the next offset runs ahead of the handler
    while the drain hands over messages read directly, one by one, and says so."""
    log = FakeLog([0, 1, 2, 3, 4, 7, 8], committed=0)
    sequencer = make(log)
    assert sequencer.handed(TOPIC, 0) is None  # nothing known before the first message
    assert handled(sequencer, [0, 1, 2, 7]) == [0, 1, 2, 3, 4, 7]
    assert sequencer.handed(TOPIC, 0) == 8  # past the hole (5, 6) too
    sequencer.handing_over = True
    assert sequencer.handed(TOPIC, 0) is None
    assert sequencer.next_offset(TOPIC, 0) == 8


def test_a_hole_in_the_middle_is_refilled() -> None:
    log = FakeLog(list(range(100)), committed=0)
    assert handled(make(log), [0, 1, 2, 7, 8]) == list(range(9))


def test_with_no_committed_offset_the_log_start_is_the_first_to_handle() -> None:
    log = FakeLog(list(range(10, 30)), committed=None)
    assert handled(make(log), [17, 18]) == list(range(10, 19))


def test_redelivered_offsets_are_dropped_so_each_offset_is_handled_once() -> None:
    log = FakeLog(list(range(100)), committed=0)
    metrics = Metrics()
    # a seek back to the committed offset re-delivers what was already handled
    assert handled(make(log, metrics), [0, 1, 2, 3, 0, 1, 2, 3, 4]) == [0, 1, 2, 3, 4]
    assert metrics.counts[("input_redelivered_dropped", TOPIC)] == 4


def test_offsets_without_a_message_read_as_an_empty_hole() -> None:
    # transaction markers take offsets 5 and 6: nothing to refill, one read to find out
    log = FakeLog([0, 1, 2, 3, 4, 7, 8], committed=0)
    metrics = Metrics()
    assert handled(make(log, metrics), [0, 1, 2, 3, 4, 7, 8]) == [0, 1, 2, 3, 4, 7, 8]
    assert log.reads == [(5, 7)]
    assert metrics.counts[("input_gap_messages_refilled", TOPIC)] == 0


def test_after_a_rebalance_it_starts_again_from_the_committed_offset() -> None:
    log = FakeLog(list(range(100)), committed=0)
    sequencer = make(log)
    assert handled(sequencer, [0, 1, 2, 3]) == [0, 1, 2, 3]
    sequencer.reset()
    log.committed = 2  # the old owner committed up to 2; 2 and 3 come again
    assert handled(sequencer, [2, 3, 4]) == [2, 3, 4]


def test_a_failed_lookup_raises_to_the_caller() -> None:
    async def broken(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise TimeoutError("no broker")

    sequencer = Sequencer(start_offsets=broken, read_range=FakeLog([], 0).read, assigned=lambda: [], metrics=Metrics())
    with pytest.raises(TimeoutError):
        asyncio.run(sequencer.admit(msg(3)))


def test_the_committed_offset_at_the_assignment_is_kept_for_the_outbox() -> None:
    """The join's outbox re-sends entries at or after it (agents/outbox.py): it must be the
    group's committed offset when the partition was assigned, not the moving next offset."""
    log = FakeLog(list(range(100)), committed=40)
    sequencer = make(log)
    assert sequencer.committed(TOPIC, 0) is None, "unknown before the first message"
    handled(sequencer, list(range(40, 60)))
    assert sequencer.committed(TOPIC, 0) == 40 and sequencer.next_offset(TOPIC, 0) == 60
    sequencer.reset()
    assert sequencer.committed(TOPIC, 0) is None, "a rebalance: read again at the next assignment"


def test_a_tail_the_consumer_never_delivers_is_read_once_it_has_not_moved_for_the_stall_time() -> None:
    # The two-process backlog test (4 December): the last messages of a topic partition lost the race
    # with Faust's seek after the assignment; nothing later came to show the hole, and the merge
    # waited for them for good.
    log = FakeLog(list(range(10)), committed=0)
    now = [0]
    sequencer = Sequencer(
        start_offsets=log.start_offsets,
        read_range=log.read,
        assigned=lambda: [(TOPIC, 0)],
        metrics=Metrics(),
        clock=lambda: now[0],
    )
    assert handled(sequencer, [0, 1, 2, 3, 4]) == [0, 1, 2, 3, 4]

    def ask(end: int | None = 10, limit: int = 100) -> list[int]:
        tails = asyncio.run(sequencer.stalled(0, [TOPIC], lambda t, p: end, stall_ms=2_000, limit=limit))
        return [m.offset for m in tails]

    assert ask() == [], "first seen unmoved now"
    now[0] = 1_999
    assert ask() == [] and log.reads == [], "not for the stall time yet"
    assert handled(sequencer, [5]) == [5], "the consumer delivers: it moved"
    now[0] = 3_000
    assert ask() == [], "seen unmoved again from now"
    now[0] = 5_000
    assert ask(end=None) == [] and ask(end=6) == [], "nothing known beyond, or nothing beyond"
    assert ask(limit=3) == [6, 7, 8] and log.reads == [(6, 9)]
    assert sequencer.next_offset(TOPIC, 0) == 9
    assert handled(sequencer, [6, 7]) == [], "Faust's late delivery of them is dropped"
    now[0] = 6_000
    assert ask() == [], "a read restarts the stall time"
    now[0] = 7_000
    assert ask() == [9] and sequencer.next_offset(TOPIC, 0) == 10
    assert handled(sequencer, [10]) == [10]
    sequencer.reset()
    assert ask() == [], "nothing known after a rebalance until the first message"
