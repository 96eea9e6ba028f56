"""agents/wakeup.py: a tick sent to a partition at the moment the merge's wait ends; no broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agents.wakeup import Wakeups


def run(body: Callable[[Wakeups, list[tuple[int, float]]], Coroutine[Any, Any, None]]) -> None:
    """`body(wakeups, sent)`: `sent` gets (partition, monotonic seconds) per tick sent."""

    async def main() -> None:
        sent: list[tuple[int, float]] = []
        wakeups = Wakeups(lambda partition: sent.append((partition, time.monotonic())), clock=_now_ms)
        await asyncio.wait_for(body(wakeups, sent), timeout=20)

    asyncio.run(main())


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def test_a_tick_goes_to_the_partition_at_the_moment_named_and_not_before() -> None:
    async def body(wakeups: Wakeups, sent: list[tuple[int, float]]) -> None:
        began = time.monotonic()
        wakeups.at(4, _now_ms() + 80)
        assert wakeups.pending() == 1
        await asyncio.sleep(0.04)
        assert sent == [], "not before the moment"
        await asyncio.sleep(0.15)
        assert [p for p, _ in sent] == [4]
        assert sent[0][1] - began >= 0.08
        assert wakeups.pending() == 0 and len(sent) == 1

    run(body)


def test_a_later_moment_waits_for_the_earlier_tick_and_an_earlier_one_is_added() -> None:
    """The join names the moment again whenever it looks and the head is still held, so one
    wake-up per partition is enough: a later one is dropped, an earlier one added."""

    async def body(wakeups: Wakeups, sent: list[tuple[int, float]]) -> None:
        now = _now_ms()
        wakeups.at(1, now + 50)
        wakeups.at(1, now + 60)  # due later than the one waiting: dropped
        wakeups.at(2, now + 60)  # another partition: its own
        wakeups.at(1, now + 10)  # earlier: added
        await asyncio.sleep(0.25)
        assert sorted(p for p, _ in sent) == [1, 1, 2]
        assert sent[0][0] == 1, "the earliest first"
        assert wakeups.pending() == 0

    run(body)


def test_a_moment_already_past_sends_at_once_and_cancel_sends_nothing_more() -> None:
    async def body(wakeups: Wakeups, sent: list[tuple[int, float]]) -> None:
        wakeups.at(0, _now_ms() - 5_000)
        await asyncio.sleep(0.05)
        assert [p for p, _ in sent] == [0]
        wakeups.at(0, _now_ms() + 30)
        wakeups.at(3, _now_ms() + 30)
        wakeups.cancel()
        await asyncio.sleep(0.1)
        assert [p for p, _ in sent] == [0] and wakeups.pending() == 0

    run(body)
