"""Does the broker hold input the worker has not received? (agents/unread.py)"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.unread import UnreadCheck


class Consumer:
    def __init__(self, highwater: int | None) -> None:
        self.high = highwater

    def highwater(self, tp: Any) -> int | None:
        return self.high


class App:
    def __init__(self, highwater: int | None) -> None:
        self.consumer = Consumer(highwater)


class Side:
    def __init__(self, end: int) -> None:
        self.end = end
        self.asked = 0

    async def log_end(self, topic: str, partition: int) -> int:
        self.asked += 1
        return self.end


class Sequence:
    def __init__(self, next_offset: int | None) -> None:
        self.next = next_offset

    def next_offset(self, topic: str, partition: int) -> int | None:
        return self.next


def check(highwater: int | None, end: int, next_offset: int | None) -> tuple[bool, int]:
    side = Side(end)
    unread = UnreadCheck(App(highwater), side, Sequence(next_offset))  # type: ignore[arg-type]  # stand-ins
    return asyncio.run(unread("clearance.payments", 0, since_ms=0)), side.asked


def test_the_consumer_knowing_of_more_is_enough() -> None:
    assert check(highwater=120, end=120, next_offset=100) == (True, 0)


def test_nothing_unread_is_confirmed_by_the_broker() -> None:
    assert check(highwater=100, end=100, next_offset=100) == (False, 1)
    assert check(highwater=100, end=101, next_offset=100) == (True, 1)  # the consumer's figure was old


def test_a_partition_not_fetched_since_the_assignment_asks_the_broker() -> None:
    """aiokafka knows no high watermark before its first fetch of a partition: that is not
    'unread' (it held a partition's last documents, and its commits, for good after a
    hand-over with no more input on that topic partition)."""
    assert check(highwater=None, end=100, next_offset=100) == (False, 1)
    assert check(highwater=None, end=107, next_offset=100) == (True, 1)


def test_before_the_first_message_since_the_assignment_it_counts_as_unread() -> None:
    assert check(highwater=None, end=100, next_offset=None) == (True, 0)
