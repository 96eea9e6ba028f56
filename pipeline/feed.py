"""A trace's files into an Engine: each file's lines parsed, the three merged by appTime.

The embedded runner's loop (docs/CONTRACT.md, "Files"): the valid documents of the files
are applied in merge order, (appTime, file rank, line), the order `heapq.merge` gives
over the files' (appTime, rank, line) tuples, pulled at the same moments: the first
document of every file, then after each applied document the next of its file. An
invalid line is dead-lettered as it is read. The shell passes the lines (the files'
I/O), the wall clock (`time.time_ns`) and a sink for what comes out; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Final, Protocol

from pipeline.engine import PARSERS, Engine, Origin, Outputs
from pipeline.records import DocKind, Document, TupleNew

PROGRESS_EVERY: Final = 4096  # documents between two `Sink.progress` calls
_new: Final[TupleNew] = tuple.__new__


class Sink(Protocol):
    """Where the outputs go."""

    def write(self, out: Outputs) -> None:
        """Take the declarations, dead letters and internal errors in `out` (emptied afterwards)."""
        ...

    def progress(self, done_bytes: int) -> None:
        """The bytes of the documents applied so far (every PROGRESS_EVERY documents)."""
        ...


class Source:
    """One file's valid documents, in line order: its head is the next to merge."""

    __slots__ = ("rank", "kind", "topic", "lines", "parse", "index", "app_ms", "raw", "doc")

    def __init__(self, rank: int, kind: DocKind, topic: str, lines: Iterator[bytes]) -> None:
        self.rank = rank
        self.kind = kind
        self.topic = topic
        self.lines = lines
        self.parse = PARSERS[kind]
        self.index = -1  # the head's line number
        self.app_ms = 0
        self.raw = b""
        self.doc: Document | None = None  # None: no line left

    def pull(self, engine: Engine, sink: Sink, clock_ns: Callable[[], int], out: Outputs) -> None:
        """Read on to the next valid document (dead-lettering invalid lines); `doc` None at the end."""
        parse = self.parse
        for raw in self.lines:
            self.index += 1
            try:
                doc = parse(raw)
            except Exception:  # bad input or a bug: Engine.parse dead-letters it and tells which
                engine.parse(self.kind, raw, Origin(self.topic, 0, self.index), clock_ns() // 1_000_000, out)
                sink.write(out)
                empty(out)
                continue
            self.app_ms, self.raw, self.doc = doc.app_time_ms, raw, doc
            return
        self.doc = None

    def before(self, other: Source) -> bool:
        """True when this head merges before `other`'s: (appTime, rank, line)."""
        if self.app_ms != other.app_ms:
            return self.app_ms < other.app_ms
        return self.rank < other.rank  # ranks differ: a file's lines never compete with each other


def feed(
    engine: Engine,
    files: Sequence[tuple[DocKind, str, Iterator[bytes]]],
    sink: Sink,
    clock_ns: Callable[[], int],
) -> tuple[int, int]:
    """Apply every valid document of `files` ((kind, topic, lines), in rank order) in merge order.

    `clock_ns`: the wall clock in nanoseconds (`time.time_ns`: a C call, where a Python
    function returning milliseconds was a tenth of this loop's own cost).

    Returns (documents applied, their bytes with one newline each). The shell closes the
    windows at the end (`Engine.close_all`).
    """
    out = Outputs()  # one for the whole run, emptied after each write: most events emit nothing
    sources: list[Source] = []
    for rank, (kind, topic, lines) in enumerate(files):
        source = Source(rank, kind, topic, lines)
        source.pull(engine, sink, clock_ns, out)
        if source.doc is not None:
            sources.append(source)
    count = done_bytes = 0
    apply = engine.apply
    while sources:
        best = sources[0]
        for source in sources:
            if source.before(best):
                best = source
        doc = best.doc
        if doc is None:
            raise AssertionError("a source without a head is removed from the merge")
        raw = best.raw
        # tuple.__new__ with every field: Origin's generated __new__ is a Python function.
        apply(doc, raw, _new(Origin, (best.topic, 0, best.index, None)), clock_ns() // 1_000_000, out)
        if out.declarations or out.dead_letters:
            sink.write(out)
            empty(out)
        count += 1
        done_bytes += len(raw) + 1
        if count % PROGRESS_EVERY == 0:
            sink.progress(done_bytes)
        best.pull(engine, sink, clock_ns, out)
        if best.doc is None:
            sources.remove(best)
    return count, done_bytes


def empty(out: Outputs) -> None:
    """Forget what the sink has taken (internal errors are always dead-lettered too)."""
    out.declarations.clear()
    out.dead_letters.clear()
    out.internal_errors.clear()
