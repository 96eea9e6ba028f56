"""The group's committed offsets follow our released acks, whatever Faust's own books say.

Faust commits from its list of acked offsets (`Consumer._new_offset`): the first run of
consecutive offsets, and nothing while the smallest acked offset is more than one past its
committed offset. Offsets that are in neither its acked list nor its gap list stop a
partition's commits for good: measured, after a scale-out or a kill -9, now and then one
partition's commits stayed 1 to 160 offsets short while every message had been handled
(lag never returned to 0; the end-of-replay flush that waits for it never came; the next
owner re-read them). Which messages end up in neither list depends on Faust's stream
buffer around a rebalance, the offset check's refills and Faust's gap tree, and is not
ours to reconstruct.

We know something simpler and sufficient: the agents release acks strictly in offset order
per topic partition, each only after everything its message caused was delivered
(agents/acks.py, agents/sequence.py). So the offset after the last released ack is
committable, by construction. `Commits` remembers it per topic partition and commits it
itself when Faust's committed offset has stayed behind it for `grace_s` (Faust normally
catches up within one commit interval, and then this does nothing), before the partitions
are revoked in a rebalance, and at a clean stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("clearance.worker")

TopicPartition = tuple[str, int]
Committed = Callable[[str, int], "int | None"]
Commit = Callable[[dict[TopicPartition, int]], Awaitable[bool]]


class Commits:
    """The committable offset per topic partition, and the commits Faust does not make."""

    def __init__(
        self, *, committed: Committed, commit: Commit, grace_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._committed = committed
        self._commit = commit
        self._grace_s = grace_s
        self._clock = clock
        self._released: dict[TopicPartition, int] = {}
        self._behind: dict[TopicPartition, tuple[float, int | None]] = {}  # since when, at which committed offset
        self.caught_up = 0  # partition commits made here because Faust's stayed behind
        # Bumped at every rebalance: an ack taken before it is dropped (agents/stream.py `_Release`).
        self.generation = 0

    def released(self, topic: str, partition: int, offset: int) -> None:
        """The ack of `offset` was released: every offset up to it is handled and delivered."""
        key = (topic, partition)
        if offset + 1 > self._released.get(key, -1):
            self._released[key] = offset + 1

    def position(self, topic: str, partition: int) -> int | None:
        """The committable offset of a topic partition (None: nothing released since the assignment)."""
        return self._released.get((topic, partition))

    def reset(self) -> None:
        """A rebalance: partitions may have moved; start again from the next released acks."""
        self._released.clear()
        self._behind.clear()
        self.generation += 1

    def behind(self) -> dict[TopicPartition, int]:
        """Topic partitions whose committed offset is behind the released acks: the offsets to commit."""
        due: dict[TopicPartition, int] = {}
        for (topic, partition), position in self._released.items():
            committed = self._committed(topic, partition)
            if committed is None or committed < position:
                due[topic, partition] = position
        return due

    async def catch_up(self) -> dict[TopicPartition, int]:
        """Commit what Faust has left behind the released acks for `grace_s` (called on a timer)."""
        now = self._clock()
        due = self.behind()
        for key in [k for k in self._behind if k not in due]:
            del self._behind[key]
        stalled: dict[TopicPartition, int] = {}
        for key, position in due.items():
            committed = self._committed(*key)
            since, seen = self._behind.get(key, (now, committed))
            if seen != committed:  # Faust is moving: give it its time again
                since, seen = now, committed
            self._behind[key] = (since, seen)
            if now - since >= self._grace_s:
                stalled[key] = position
        if stalled:
            await self._commit_now(stalled, "Faust's commit stayed behind the released acks")
        return stalled

    async def commit_all(self, reason: str) -> dict[TopicPartition, int]:
        """Commit every released ack Faust has not committed yet (before a revocation, at a stop)."""
        due = self.behind()
        if due:
            await self._commit_now(due, reason)
        return due

    async def _commit_now(self, offsets: dict[TopicPartition, int], reason: str) -> None:
        try:
            done = await self._commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a failed commit is retried on the next tick
            log.warning("%s: committing %d partition(s) failed (%s)", reason, len(offsets), type(exc).__name__)
            return
        if not done:
            return
        for key in offsets:
            self._behind.pop(key, None)
        self.caught_up += len(offsets)
        log.info(
            "%s: committed %s",
            reason,
            ", ".join(f"{t}[{p}]@{position}" for (t, p), position in sorted(offsets.items())),
        )
