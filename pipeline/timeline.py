"""Event time and the deadline index of one partition (or of a whole trace).

Event time is the largest appTime seen. Deadlines are indexed with lazy deletion: an
entry is acted on only if the stored state still carries that deadline, so rescheduling
never needs a search.

The index holds an entry for every open window and for every retained decided order (7
days of them at a park: most of the index), so how an entry is kept is the worker's
memory per order (issue 13). An entry is one `bytes`: the deadline as 8 big-endian
bytes (offset by 2**63, so negative deadlines sort first too) and then the order number
in UTF-8, which compares as the (deadline, orderNo) pair does (UTF-8 keeps the order of
code points). Entries that come in order, as the retention deadlines do (event time at
the decision plus the retention, and event time only moves forward), are appended to a
sorted run packed into 64 KiB chunks: about 30 bytes an entry, outside the Python
object heap, freed a chunk at a time. The others (the windows' deadlines, which come
between them) go to a min-heap of `bytes` (72 bytes an entry with its list slot; a tuple
of an int and a str was 184). Popping takes the smaller of the two fronts.
"""

from __future__ import annotations

import heapq
from collections import deque

_OFFSET = 1 << 63
_NONE = 1 << 64  # "no deadline": above every packed one
_CHUNK = 1 << 16


def entry(deadline_ms: int, order_no: str) -> bytes:
    """One index entry: what `Timeline.from_entries` takes."""
    return (deadline_ms + _OFFSET).to_bytes(8, "big") + order_no.encode()


def _pair(packed: bytes) -> tuple[int, str]:
    return int.from_bytes(packed[:8], "big") - _OFFSET, packed[8:].decode()


class _Run:
    """Entries in sorted order, packed (a 2-byte length, then the entry) into chunks."""

    __slots__ = ("chunks", "pos", "last", "front", "count")

    def __init__(self) -> None:
        self.chunks: deque[bytearray] = deque()
        self.pos = 0  # where the front entry starts in chunks[0]
        self.last = b""  # the entry appended last: the next must not sort below it
        self.front: bytes | None = None  # the smallest entry, unpacked
        self.count = 0

    def append(self, packed: bytes) -> bool:
        """Add `packed` at the end if it does not sort below the last entry; else False."""
        if packed < self.last:
            return False
        self.last = packed
        chunks = self.chunks
        if not chunks or len(chunks[-1]) >= _CHUNK:
            chunks.append(bytearray())
        chunks[-1] += len(packed).to_bytes(2, "big") + packed
        self.count += 1
        if self.front is None:
            self.front = packed
        return True

    def pop(self) -> bytes:
        """Remove and return the front entry (there is one)."""
        out = self.front
        if out is None:
            raise IndexError("pop from an empty run")
        chunks = self.chunks
        self.pos += 2 + len(out)
        self.count -= 1
        if self.pos >= len(chunks[0]):
            chunks.popleft()
            self.pos = 0
        if self.count:
            chunk, pos = chunks[0], self.pos
            end = pos + 2 + int.from_bytes(chunk[pos : pos + 2], "big")
            self.front = bytes(chunk[pos + 2 : end])
        else:
            self.front = None
            self.last = b""
        return out

    def drain(self) -> list[bytes]:
        out = []
        while self.count:
            out.append(self.pop())
        return out


class Timeline:
    """Event time plus the deadline index: (deadline_ms, order_no) entries, earliest first."""

    __slots__ = ("event_ms", "_heap", "_run", "_next_ms")

    def __init__(self, event_ms: int = 0) -> None:
        self.event_ms = event_ms
        self._heap: list[bytes] = []
        self._run = _Run()
        self._next_ms = _NONE  # the earliest deadline indexed (offset), or _NONE

    @classmethod
    def from_entries(cls, event_ms: int, entries: list[bytes]) -> Timeline:
        """A timeline over `entry(deadline_ms, order_no)`s in any order (the list is sorted in place)."""
        timeline = cls(event_ms)
        entries.sort()
        run = timeline._run
        for packed in entries:
            run.append(packed)
        entries.clear()
        timeline._refresh()
        return timeline

    def advance(self, app_time_ms: int) -> int:
        """Move event time forward to `app_time_ms` if it is later; return event time."""
        if app_time_ms > self.event_ms:
            self.event_ms = app_time_ms
        return self.event_ms

    def schedule(self, deadline_ms: int, order_no: str) -> None:
        """Index a deadline; stale entries are skipped when they come due."""
        due = deadline_ms + _OFFSET
        packed = due.to_bytes(8, "big") + order_no.encode()
        if not self._run.append(packed):
            heapq.heappush(self._heap, packed)
        if due < self._next_ms:
            self._next_ms = due

    def has_due(self) -> bool:
        """True when an entry's deadline is before event time (`due(event_ms)` is not empty)."""
        return self._next_ms < self.event_ms + _OFFSET

    def due(self, event_ms: int, limit: int | None = None) -> list[tuple[int, str]]:
        """Pop every entry whose deadline is before `event_ms` (the first `limit` of them), earliest first."""
        if self._next_ms >= event_ms + _OFFSET:
            return []
        if event_ms + _OFFSET >= _NONE and limit is None:  # past every deadline an entry can hold
            return self.drain()
        bound = (  # an entry sorts below it iff deadline < event_ms
            max(event_ms + _OFFSET, 0).to_bytes(8, "big") if event_ms + _OFFSET < _NONE else b"\xff" * 9
        )
        heap, run, out = self._heap, self._run, []
        left = -1 if limit is None else limit
        while left:
            left -= 1
            front = run.front
            if heap and (front is None or heap[0] < front):
                if heap[0] >= bound:
                    break
                out.append(_pair(heapq.heappop(heap)))
            elif front is not None and front < bound:
                out.append(_pair(run.pop()))
            else:
                break
        self._refresh()
        return out

    def drain(self) -> list[tuple[int, str]]:
        """Pop every entry, earliest first (end of input: every window closes)."""
        heap = self._heap
        heap.sort()  # the same order as popping one by one, in one C-level sort
        self._heap = []
        merged = heapq.merge(heap, self._run.drain())
        self._next_ms = _NONE
        return [_pair(packed) for packed in merged]

    def _refresh(self) -> None:
        heap, front = self._heap, self._run.front
        first = min(heap[0], front) if heap and front is not None else heap[0] if heap else front
        self._next_ms = _NONE if first is None else int.from_bytes(first[:8], "big")

    def __len__(self) -> int:
        return len(self._heap) + self._run.count
