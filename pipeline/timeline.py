"""Event time and the deadline index of one partition (or of a whole trace).

Event time is the largest appTime seen. Deadlines are indexed with lazy deletion: an
entry is acted on only if the order still has that deadline, so rescheduling never needs a
search. An entry says whether it is a window's deadline or a retained order's, so the loop
(pipeline/engine.py) can tell a window's stale entry by its set of open windows without
reading the order's state: every decided order leaves one behind, and a flush or a late
document that moves event time a day on passes all of them at once.

The index holds an entry for every open window and for every retained decided order (7
days of them at a park: most of the index), so how an entry is kept is the worker's
memory per order (issue 13). An entry is one `bytes`: the deadline as 8 big-endian
bytes (offset by 2**63, so negative deadlines sort first too), one byte for its kind (0 a
window, 1 a retention) and then the order number in UTF-8, which compares as the
(deadline, kind, orderNo) triple does (UTF-8 keeps the order of code points). Entries
that come in order, as the retention deadlines do (event time at the decision plus the
retention, and event time only moves forward), are appended to a
sorted run packed into 64 KiB chunks: about 30 bytes an entry, outside the Python
object heap, freed a chunk at a time. The others (the windows' deadlines, which come
between them) go to a min-heap of `bytes` (72 bytes an entry with its list slot; a tuple
of an int and a str was 184). Popping takes the smaller of the two fronts.

The run is a queue: appended at its back, popped at its front. Only those two chunks are
needed in memory; the full chunks between them go to a `Spill`, first in, first out. The
default keeps them in memory; the Kafka worker gives each partition one on disk
(agents/spill.py), so 7 days of retained orders do not stay in the process (4.5 million at
a park: ~135 MB).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Final, Protocol

_OFFSET: Final = 1 << 63
_NONE: Final = 1 << 64  # "no deadline": above every packed one
_CHUNK: Final = 1 << 16


_WINDOW: Final = b"\x00"
_RETENTION: Final = b"\x01"

Due = tuple[int, str, bool]  # (deadline_ms, order_no, a window's: True; a retention's: False)


def entry(deadline_ms: int, order_no: str, window: bool = False) -> bytes:
    """One index entry: what `Timeline.from_entries` takes."""
    return (deadline_ms + _OFFSET).to_bytes(8, "big") + (_WINDOW if window else _RETENTION) + order_no.encode()


def _due(packed: bytes) -> Due:
    return int.from_bytes(packed[:8], "big") - _OFFSET, packed[9:].decode(), packed[8] == 0


class Spill(Protocol):
    """Where a run's full chunks wait, first in, first out."""

    def put(self, chunk: bytes) -> None:
        """Keep `chunk` behind the others."""
        ...

    def take(self) -> bytes:
        """Remove and return the chunk put first (there is one)."""
        ...

    def __len__(self) -> int: ...


class InMemory:
    """A `Spill` that keeps the chunks in memory (the default)."""

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()

    def put(self, chunk: bytes) -> None:
        """Keep `chunk` behind the others."""
        self._chunks.append(chunk)

    def take(self) -> bytes:
        """Remove and return the chunk put first."""
        return self._chunks.popleft()

    def __len__(self) -> int:
        return len(self._chunks)


class _Run:
    """Entries in sorted order, packed (a 2-byte length, then the entry) into chunks.

    The front chunk is `head`, read from `pos`; full ones wait in `middle`; the back one is
    `tail`, None while the head is also the back.
    """

    __slots__ = ("head", "pos", "middle", "tail", "last", "front", "count")

    def __init__(self, spill: Spill | None = None) -> None:
        self.head = bytearray()
        self.pos = 0  # where the front entry starts in head
        self.middle: Spill = InMemory() if spill is None else spill
        self.tail: bytearray | None = None
        self.last = b""  # the entry appended last: the next must not sort below it
        self.front: bytes | None = None  # the smallest entry, unpacked
        self.count = 0

    def append(self, packed: bytes) -> bool:
        """Add `packed` at the end if it does not sort below the last entry; else False."""
        if packed < self.last:
            return False
        self.last = packed
        record = len(packed).to_bytes(2, "big") + packed
        tail = self.tail
        if tail is None:
            if len(self.head) < _CHUNK:
                self.head += record
            else:
                self.tail = bytearray(record)
        elif len(tail) < _CHUNK:
            tail += record
        else:
            self.middle.put(bytes(tail))
            self.tail = bytearray(record)
        self.count += 1
        if self.front is None:
            self.front = packed
        return True

    def pop(self) -> bytes:
        """Remove and return the front entry (there is one)."""
        out = self.front
        if out is None:
            raise IndexError("pop from an empty run")
        self.pos += 2 + len(out)
        self.count -= 1
        if self.pos >= len(self.head):
            self.pos = 0
            if len(self.middle):
                self.head = bytearray(self.middle.take())
            elif self.tail is not None:
                self.head, self.tail = self.tail, None
            else:
                self.head = bytearray()
        if self.count:
            head, pos = self.head, self.pos
            end = pos + 2 + int.from_bytes(head[pos : pos + 2], "big")
            self.front = bytes(head[pos + 2 : end])
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
    """Event time plus the deadline index: (deadline_ms, order_no, window) entries, earliest first."""

    __slots__ = ("event_ms", "_heap", "_run", "_next_ms")

    def __init__(self, event_ms: int = 0, spill: Spill | None = None) -> None:
        """`spill` takes the sorted run's full chunks (see the module's docstring); it must be empty."""
        self.event_ms = event_ms
        self._heap: list[bytes] = []
        self._run = _Run(spill)
        self._next_ms = _NONE  # the earliest deadline indexed (offset), or _NONE

    @classmethod
    def from_entries(cls, event_ms: int, entries: list[bytes], spill: Spill | None = None) -> Timeline:
        """A timeline over `entry(deadline_ms, order_no, window)`s in any order (the list is sorted in place)."""
        timeline = cls(event_ms, spill)
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

    def schedule(self, deadline_ms: int, order_no: str, window: bool = False) -> None:
        """Index a deadline (`window`: a window's; else a retention's).

        Stale entries are skipped when they come due.
        """
        packed = entry(deadline_ms, order_no, window)
        due = deadline_ms + _OFFSET
        if not self._run.append(packed):
            heapq.heappush(self._heap, packed)
        if due < self._next_ms:
            self._next_ms = due

    def has_due(self) -> bool:
        """True when an entry's deadline is before event time (`due(event_ms)` is not empty)."""
        return self._next_ms < self.event_ms + _OFFSET

    def due(self, event_ms: int, limit: int | None = None) -> list[Due]:
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
                out.append(_due(heapq.heappop(heap)))
            elif front is not None and front < bound:
                out.append(_due(run.pop()))
            else:
                break
        self._refresh()
        return out

    def drain(self) -> list[Due]:
        """Pop every entry, earliest first (end of input: every window closes)."""
        heap = self._heap
        heap.sort()  # the same order as popping one by one, in one C-level sort
        self._heap = []
        merged = heapq.merge(heap, self._run.drain())
        self._next_ms = _NONE
        return [_due(packed) for packed in merged]

    def _refresh(self) -> None:
        heap, front = self._heap, self._run.front
        first = min(heap[0], front) if heap and front is not None else heap[0] if heap else front
        self._next_ms = _NONE if first is None else int.from_bytes(first[:8], "big")

    def __len__(self) -> int:
        return len(self._heap) + self._run.count
