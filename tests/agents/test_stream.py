"""agents.stream: a message's release acks it and makes the offset after it committable, unless a
rebalance came since the message was received; the drain says when it hands over what the offset
guard read directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from agents.acks import Delivery
from agents.commits import Commits
from agents.metrics import Metrics
from agents.sender import Msg
from agents.sequence import Sequencer
from agents.stream import _Release, drain


def _commits() -> Commits:
    async def commit(offsets: dict[tuple[str, int], int]) -> bool:
        return True

    return Commits(committed=lambda topic, partition: None, commit=commit, grace_s=3.0)


def _msg(offset: int) -> Msg:
    return Msg("clearance.ticks", 5, offset, None, b'{"eventTime": 1}', None)


def test_a_release_acks_and_makes_the_next_offset_committable() -> None:
    commits, acked = _commits(), []
    _Release(lambda: acked.append(7), _msg(7), commits)()
    assert acked == [7]
    assert commits.position("clearance.ticks", 5) == 8


def test_a_message_received_before_a_rebalance_is_not_acked_after_it() -> None:
    """The flush tick that came while the partitions were revoked, acked once its handling ended:
    the worker that got the partition back committed past it and never applied it."""
    commits, acked = _commits(), []
    before = _Release(lambda: acked.append(0), _msg(0), commits)
    commits.reset()  # the rebalance (agents/app.py `_on_rebalance`)
    before()
    assert acked == []
    assert commits.position("clearance.ticks", 5) is None  # the committed offset stays before it
    after = _Release(lambda: acked.append(1), _msg(1), commits)
    after()
    assert acked == [1]
    assert commits.position("clearance.ticks", 5) == 2


def test_every_rebalance_counts() -> None:
    commits, acked = _commits(), []
    release = _Release(lambda: acked.append(3), _msg(3), commits)
    commits.reset()
    commits.reset()
    release()
    assert acked == []


class _Message:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "clearance.orders", 0, offset
        self.key, self.value, self.timestamp = b"PK1", b"{}", 1_800_000_000.0


class _Event:
    def __init__(self, offset: int) -> None:
        self.message = _Message(offset)

    def ack(self) -> bool:
        return True


class _Stream:
    """What the drain reads of a Faust stream: `noack().events()`, delivering these offsets."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets

    def noack(self) -> _Stream:
        return self

    async def events(self) -> AsyncIterator[_Event]:
        for offset in self.offsets:
            yield _Event(offset)


def test_the_drain_says_while_it_hands_over_what_the_guard_read_directly() -> None:
    """Faust delivers 0 and 4; the guard reads 1 to 3 directly when 4 comes. While they are handed
    over the guard's next offset is past them, and `handed` says it does not know."""

    async def main() -> list[tuple[int, int | None]]:
        async def start_offsets(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
            return dict.fromkeys(tps, 0)

        async def read(topic: str, partition: int, start: int, end: int) -> list[Msg]:
            return [Msg(topic, partition, o, b"PK1", b"{}", None) for o in range(start, end)]

        sequencer = Sequencer(
            start_offsets=start_offsets,
            read_range=read,
            assigned=lambda: [("clearance.orders", 0)],
            metrics=Metrics(),
        )
        seen: list[tuple[int, int | None]] = []

        async def handle(msg: Msg, ack: Any) -> None:
            seen.append((msg.offset, sequencer.handed(msg.topic, msg.partition)))

        await drain(_Stream([0, 4]), handle, sequencer, Delivery(), _commits())  # type: ignore[arg-type]
        assert not sequencer.handing_over
        return seen

    assert asyncio.run(main()) == [(0, 1), (1, None), (2, None), (3, None), (4, 5)]
