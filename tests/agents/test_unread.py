"""agents.unread.UnreadCheck: when the consumer's own fetch answers "nothing unread", and when
the broker is asked (a ListOffsets while the join waits).

Stand-ins for Faust's consumer (its public `highwater`), the side reader's `log_end` and the
time of the consumer's last fetch; a real Sequencer position and a real Metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import TopicPartition as AIOTopicPartition
from faust.types import TP

from agents.faust_internals import last_fetch_ms
from agents.metrics import Metrics
from agents.unread import UnreadCheck
from clearance.clock import wall_ms
from tests.agents.standin_faust import App as FaustApp
from tests.agents.standin_faust import ConsumerThread


class Consumer:
    def __init__(self) -> None:
        self.high: dict[TP, int | None] = {}

    def highwater(self, tp: TP) -> int | None:
        if tp not in self.high:
            raise AssertionError("not assigned")
        return self.high[tp]


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


class Side:
    def __init__(self) -> None:
        self.end = 0
        self.asked: list[tuple[str, int]] = []

    async def log_end(self, topic: str, partition: int) -> int:
        self.asked.append((topic, partition))
        return self.end


class Position:
    """The offset guard's `handed` (agents/sequence.py)."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}
        self.handing_over = False

    def handed(self, topic: str, partition: int) -> int | None:
        return None if self.handing_over else self.next.get((topic, partition))


class Harness:
    def __init__(self) -> None:
        self.app, self.side, self.position, self.metrics = App(), Side(), Position(), Metrics()
        self.fetched: int | None = None
        self.check = UnreadCheck(
            self.app,  # type: ignore[arg-type]  # stand-ins
            self.side,  # type: ignore[arg-type]
            self.position,  # type: ignore[arg-type]
            self.metrics,
            fetched_ms=lambda topic, partition: self.fetched,
        )

    def unread(self, since_ms: int) -> bool:
        return asyncio.run(self.check("payments", 4, since_ms))

    def state(self, *, received: int, high: int | None, fetched: int | None, end: int = 0) -> None:
        self.position.next[("payments", 4)] = received
        self.app.consumer.high[TP("payments", 4)] = high
        self.fetched, self.side.end = fetched, end

    @property
    def asks(self) -> float:
        return self.metrics.counts[("merge_broker_asks", "payments")]


def test_a_fetch_after_the_document_arrived_answers_without_the_broker() -> None:
    h = Harness()
    h.state(received=120, high=120, fetched=5_001, end=130)  # the broker would say 130: it is not asked
    assert h.unread(since_ms=5_000) is False
    assert h.side.asked == [] and h.asks == 0


def test_a_fetch_from_before_the_document_arrived_is_not_trusted() -> None:
    """Issue 10: the consumer's watermark of a partition it has not fetched for a while is old."""
    for fetched in (4_000, 5_000, None):  # before, at the same millisecond, unknown
        h = Harness()
        h.state(received=120, high=120, fetched=fetched, end=130)
        assert h.unread(since_ms=5_000) is True
        assert h.side.asked == [("payments", 4)] and h.asks == 1
    h = Harness()
    h.state(received=120, high=120, fetched=4_000, end=120)
    assert h.unread(since_ms=4_500) is False, "the broker, asked now (after 4,500): nothing unread"


def test_the_broker_is_asked_at_most_every_200_ms_per_partition() -> None:
    h = Harness()
    h.state(received=120, high=120, fetched=None, end=120)
    asked_at = wall_ms()
    assert h.unread(since_ms=asked_at - 10) is False
    assert h.unread(since_ms=asked_at - 10) is False, "a document older than the answer: the answer holds"
    assert h.unread(since_ms=asked_at + 60_000) is True, "a newer document waits for the next question"
    assert h.asks == 1
    h.position.next[("payments", 4)] = 121  # a new position: a new question
    h.side.end = 121
    assert h.unread(since_ms=wall_ms()) is False
    assert h.asks == 2


def test_while_the_guard_hands_over_what_it_read_directly_everything_is_unread() -> None:
    """Its next offset is past the messages it read, but they are not in the merge's queues yet."""
    h = Harness()
    h.state(received=120, high=120, fetched=5_001, end=120)
    h.position.handing_over = True
    assert h.unread(since_ms=5_000) is True
    assert h.side.asked == [], "nothing to ask: the answer is known"
    h.position.handing_over = False
    assert h.unread(since_ms=5_000) is False


def test_a_watermark_past_the_position_is_unread_whenever_it_was_fetched() -> None:
    h = Harness()
    h.state(received=120, high=125, fetched=1, end=120)
    assert h.unread(since_ms=5_000) is True
    assert h.side.asked == []


def test_no_watermark_yet_asks_the_broker() -> None:
    """aiokafka knows a watermark only from a fetch: after a hand-over a partition with nothing
    new has none, and waiting for one would hold its last documents for good."""
    h = Harness()
    h.state(received=120, high=None, fetched=9_999, end=120)
    assert h.unread(since_ms=5_000) is False
    assert h.asks == 1


def test_nothing_received_since_the_assignment_is_unread_and_unassigned_is_not() -> None:
    h = Harness()
    assert h.unread(since_ms=0) is True  # no position yet
    h.position.next[("payments", 4)] = 3
    assert h.unread(since_ms=0) is False  # Consumer.highwater raises: not assigned, nothing will come
    assert h.side.asked == []


class AIOConsumer:
    def __init__(self, stamps: dict[AIOTopicPartition, int | None]) -> None:
        self.stamps = stamps

    def last_poll_timestamp(self, tp: AIOTopicPartition) -> int | None:
        assert tp in self.stamps, "Partition is not assigned"  # as aiokafka does
        return self.stamps[tp]


PAY4 = AIOTopicPartition("payments", 4)


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (
            FaustApp(ConsumerThread(AIOConsumer({PAY4: 1_700_000_000_123}))),
            1_700_000_000_123,
        ),
        (FaustApp(ConsumerThread(AIOConsumer({PAY4: None}))), None),  # never fetched
        (FaustApp(ConsumerThread(AIOConsumer({}))), None),  # not assigned (a rebalance in between)
        (FaustApp(ConsumerThread(None)), None),  # the consumer thread has not started
        (FaustApp(None), None),
    ],
)
def test_the_last_fetch_is_aiokafka_s_last_poll_timestamp(app: Any, expected: int | None) -> None:
    assert last_fetch_ms(app, "payments", 4) == expected
