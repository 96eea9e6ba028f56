"""Event time and the deadline index of one partition (or of a whole trace).

Event time is the largest appTime seen. Deadlines are kept in a heap with lazy
deletion: an entry is acted on only if the stored state still carries that
deadline, so rescheduling never needs a search.

An entry is one `bytes`: the deadline as 8 big-endian bytes (offset by 2**63, so negative
deadlines sort first too) and then the order number in UTF-8. Bytes compare as the
(deadline, orderNo) pair does, since UTF-8 keeps the order of code points. The index
holds an entry for every open window and every retained decided order (7 days of them
at a park), so its size is the heap's size: 72 bytes an entry (the object and its list
slot) against 184 for a tuple of an int and a str (benchmarks/RESULTS.md, the soak).
"""

from __future__ import annotations

import heapq

_OFFSET = 1 << 63


def entry(deadline_ms: int, order_no: str) -> bytes:
    """One index entry: what `Timeline.from_entries` takes."""
    return (deadline_ms + _OFFSET).to_bytes(8, "big") + order_no.encode()


def _pair(entry: bytes) -> tuple[int, str]:
    return int.from_bytes(entry[:8], "big") - _OFFSET, entry[8:].decode()


class Timeline:
    """Event time plus a min-heap of (deadline_ms, order_no), each packed in one bytes."""

    __slots__ = ("event_ms", "_heap")

    def __init__(self, event_ms: int = 0) -> None:
        self.event_ms = event_ms
        self._heap: list[bytes] = []

    @classmethod
    def from_entries(cls, event_ms: int, heap: list[bytes]) -> Timeline:
        """A timeline over `entry(deadline_ms, order_no)`s in any order (the list becomes its heap)."""
        timeline = cls(event_ms)
        heapq.heapify(heap)
        timeline._heap = heap
        return timeline

    def advance(self, app_time_ms: int) -> int:
        """Move event time forward to `app_time_ms` if it is later; return event time."""
        if app_time_ms > self.event_ms:
            self.event_ms = app_time_ms
        return self.event_ms

    def schedule(self, deadline_ms: int, order_no: str) -> None:
        """Index a deadline; stale entries are skipped when they come due."""
        heapq.heappush(self._heap, (deadline_ms + _OFFSET).to_bytes(8, "big") + order_no.encode())

    def has_due(self) -> bool:
        """True when an entry's deadline is before event time (`due(event_ms)` is not empty)."""
        heap = self._heap
        return bool(heap) and int.from_bytes(heap[0][:8], "big") - _OFFSET < self.event_ms

    def due(self, event_ms: int) -> list[tuple[int, str]]:
        """Pop every entry whose deadline is before `event_ms`, earliest first."""
        heap, out = self._heap, []
        if event_ms + _OFFSET >= 1 << 64:  # past every deadline an entry can hold
            return self.drain()
        bound = max(event_ms + _OFFSET, 0).to_bytes(8, "big")  # an entry sorts below it iff deadline < event_ms
        while heap and heap[0] < bound:
            out.append(_pair(heapq.heappop(heap)))
        return out

    def drain(self) -> list[tuple[int, str]]:
        """Pop every entry, earliest first (end of input: every window closes)."""
        heap = self._heap
        heap.sort()  # the same order as popping one by one, in one C-level sort
        self._heap = []
        return [_pair(entry) for entry in heap]

    def __len__(self) -> int:
        return len(self._heap)
