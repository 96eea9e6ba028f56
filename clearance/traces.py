"""Trace directories: the three input files, read line by line and merged by appTime.

A trace is a directory with `orders.jsonl`, `payments.jsonl` and `waybills.jsonl` (any
may be absent), one raw message per line. `clearance run`, `clearance replay`, the
generator and the benchmarks all read them here, so the files and the merge order are
defined once: by appTime, then by file (orders, payments, waybills), then by line.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pipeline.records import DocKind

TRACE_FILES: tuple[tuple[DocKind, str], ...] = (
    ("order", "orders.jsonl"),
    ("payment", "payments.jsonl"),
    ("waybill", "waybills.jsonl"),
)
FILE_NAMES: tuple[str, ...] = tuple(name for _, name in TRACE_FILES)

T = TypeVar("T")


class TraceError(Exception):
    """A trace cannot be read: a one-line message for the user."""


def trace_files(trace: Path) -> list[tuple[DocKind, Path]]:
    """The files present in a trace directory, in merge rank order; TraceError when none."""
    if not trace.is_dir():
        raise TraceError(f"trace directory not found: {trace}")
    present = [(kind, trace / name) for kind, name in TRACE_FILES if (trace / name).exists()]
    if not present:
        raise TraceError(f"no trace files in {trace} (expected {', '.join(FILE_NAMES)})")
    return present


def read_lines(path: Path) -> Iterator[bytes]:
    """The raw messages of a JSONL file: one per line, without its newline.

    A blank line is a message too (bad input, dead-lettered), except a last empty one."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        try:
            for line in handle:
                yield line[:-1] if line.endswith(b"\n") else line
        except OSError as exc:
            raise TraceError(f"cannot read {path}: {exc.strerror}") from exc


def count_lines(path: Path) -> int:
    """Messages in a file: newlines, plus one for a last line without a newline."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def merge(streams: Iterable[Iterable[tuple[int | None, T]]]) -> Iterator[T]:
    """Merge per-file streams of (appTime ms or None, item) by (appTime, file rank, position).

    Stream i has rank i. An item without a time sorts with its stream's previous time, so
    it keeps its place in its file; heapq.merge keeps each stream's own order in any case.
    """

    def keyed(rank: int, stream: Iterable[tuple[int | None, T]]) -> Iterator[tuple[tuple[int, int, int], T]]:
        last = -1
        for index, (time_ms, item) in enumerate(stream):
            last = time_ms if time_ms is not None else last
            yield (last, rank, index), item

    for _, item in heapq.merge(*(keyed(r, s) for r, s in enumerate(streams)), key=lambda pair: pair[0]):
        yield item
