"""Wake-ups: a tick sent to one partition at the moment its merge's wait ends.

The join looks at a partition's merge queues again only when a message of that partition
arrives: a document, or a tick. When every other topic has fallen silent (the end of a
replay, a quiet night) nothing arrives but the regular ticks, one a second, so a head
held by the merge's wait (pipeline/merge.py, the first rule) waited out the wait and then
up to a second more for the next tick. The merge knows when its wait ends
(`Merge.ready_ms`); the join names that moment here and a tick goes to the partition's
tick topic then, through the worker's producer, so the join looks again in its turn (a
tick is applied in the agent like any message: no table is written outside an event).

At most one wake-up waits per partition: a later moment is left to the one before it (the
join names the moment again when it looks and the head is still held), an earlier one is
added. A wake-up that finds nothing held costs one tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clearance.clock import wall_ms

_MARGIN_MS = 5  # sent a little after the moment, so the tick never comes before it


class Wakeups:
    """`at(partition, ms)`: a tick to `partition` at wall-clock `ms` (`send(partition)` sends it)."""

    def __init__(self, send: Callable[[int], object], clock: Callable[[], int] = wall_ms) -> None:
        self._send = send
        self._clock = clock
        self._pending: dict[int, int] = {}  # partition -> the earliest moment a tick is due
        self._handles: dict[tuple[int, int], asyncio.TimerHandle] = {}  # (partition, moment) -> its timer

    def at(self, partition: int, moment_ms: int) -> None:
        """Have a tick sent to `partition` at `moment_ms` (wall ms), unless one is due by then."""
        due = self._pending.get(partition)
        if due is not None and due <= moment_ms:
            return
        self._pending[partition] = moment_ms
        delay_s = max(0, moment_ms - self._clock() + _MARGIN_MS) / 1000
        key = (partition, moment_ms)
        self._handles[key] = asyncio.get_running_loop().call_later(delay_s, self._fire, key)

    def _fire(self, key: tuple[int, int]) -> None:
        del self._handles[key]
        partition, moment_ms = key
        if self._pending.get(partition) == moment_ms:
            del self._pending[partition]
        self._send(partition)

    def pending(self) -> int:
        """Partitions with a wake-up due."""
        return len(self._pending)

    def cancel(self) -> None:
        """Forget every wake-up (the worker stops)."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._pending.clear()
