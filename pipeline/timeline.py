"""Event time and the deadline index of one partition (or of a whole trace).

Event time is the largest appTime seen. Deadlines are kept in a heap with lazy
deletion: an entry is acted on only if the stored state still carries that
deadline, so rescheduling never needs a search.
"""

from __future__ import annotations

import heapq


class Timeline:
    """Event time plus a min-heap of (deadline_ms, order_no)."""

    __slots__ = ("event_ms", "_heap")

    def __init__(self, event_ms: int = 0) -> None:
        self.event_ms = event_ms
        self._heap: list[tuple[int, str]] = []

    @classmethod
    def from_entries(cls, event_ms: int, entries: list[tuple[int, str]]) -> Timeline:
        """A timeline over (deadline_ms, order_no) entries already in heap order (heapq.heapify)."""
        timeline = cls(event_ms)
        timeline._heap = entries
        return timeline

    def advance(self, app_time_ms: int) -> int:
        """Move event time forward to `app_time_ms` if it is later; return event time."""
        if app_time_ms > self.event_ms:
            self.event_ms = app_time_ms
        return self.event_ms

    def schedule(self, deadline_ms: int, order_no: str) -> None:
        """Index a deadline; stale entries are skipped when they come due."""
        heapq.heappush(self._heap, (deadline_ms, order_no))

    def has_due(self) -> bool:
        """True when an entry's deadline is before event time (`due(event_ms)` is not empty)."""
        heap = self._heap
        return bool(heap) and heap[0][0] < self.event_ms

    def due(self, event_ms: int) -> list[tuple[int, str]]:
        """Pop every entry whose deadline is before `event_ms`, earliest first."""
        heap, out = self._heap, []
        while heap and heap[0][0] < event_ms:
            out.append(heapq.heappop(heap))
        return out

    def drain(self) -> list[tuple[int, str]]:
        """Pop every entry, earliest first (end of input: every window closes)."""
        out = self._heap
        out.sort()  # the same order as popping one by one, in one C-level sort
        self._heap = []
        return out

    def __len__(self) -> int:
        return len(self._heap)
