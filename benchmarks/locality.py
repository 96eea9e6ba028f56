"""What the caches are worth here: a parse alone, and with other memory read between two parses (issue 12).

    .venv/bin/python -m benchmarks.locality [--trace DIR] [--documents 3000] [--reads 0,1000,4000,16000]

The worker takes one event at a time through Faust's consumer, our join, the core, RocksDB and
librdkafka, so between two parses it reads far more than this host's caches hold. Two figures:

- the memory walk: nanoseconds per read of a dependent walk through a random cycle over 256 KB to
  64 MB of slots (`benchmarks.machine.random_cycle`; the interpreter's own cost per step is in
  every figure, so read the differences);
- the parse: microseconds per document (the trace's orders, payments and waybills, valid ones,
  shuffled together as they arrive), best of three passes, with N dependent reads of far memory
  (a 64 MB cycle) between two parses: each read brings in one line of memory no parse uses, as the
  rest of the worker's work per event does. The reads are outside the timed part.

Prints JSON and appends it, with the machine, to `benchmarks/results/locality.jsonl`. The trace
defaults to bench_parsing's (`clearance generate` peak-hour, seed 11, 20,000 orders, made in the
system's temporary directory if absent).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from benchmarks import machine
from benchmarks.bench_parsing import DEFAULT_TRACE, ensure_trace
from benchmarks.machine import random_cycle, walk_ns
from pipeline import parsing

RESULTS = Path(__file__).resolve().parent / "results" / "locality.jsonl"
KINDS = {"order": "orders.jsonl", "payment": "payments.jsonl", "waybill": "waybills.jsonl"}
WALK_KB = (256, 1024, 4096, 16384, 65536)
FAR_BYTES = 64 << 20


def documents(trace: Path, count: int) -> list[tuple[Callable[[bytes], object], bytes]]:
    """`count` valid documents with their parse function: up to `count` of each kind read, the
    three kinds shuffled together, the first `count` kept."""
    docs: list[tuple[Callable[[bytes], object], bytes]] = []
    for kind, name in KINDS.items():
        parse: Callable[[bytes], object] = getattr(parsing, f"parse_{kind}")
        kept = 0
        with (trace / name).open("rb") as handle:
            for raw in handle:
                line = raw.rstrip(b"\n")
                try:
                    parse(line)
                except Exception:  # noqa: BLE001, S112 - only valid documents: a rejection costs less
                    continue
                docs.append((parse, line))
                kept += 1
                if kept == count:
                    break
    random.Random(11).shuffle(docs)
    return docs[:count]


def parse_us(docs: list[tuple[Callable[[bytes], object], bytes]], reads: int, far: tuple[array[int], int]) -> float:
    """Microseconds per parse with `reads` dependent reads of `far` (a random cycle) before each, best of 3."""
    slots, at = far
    clock = time.perf_counter_ns
    best = float("inf")
    for _ in range(3):
        spent = 0
        for parse, line in docs:
            for _ in range(reads):
                at = slots[at]
            started = clock()
            parse(line)
            spent += clock() - started
        best = min(best, spent / len(docs) / 1e3)
    return round(best, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.locality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--documents", type=int, default=3_000, help="documents parsed per pass (default 3,000)")
    parser.add_argument(
        "--reads", default="0,1000,4000,16000", help="far reads between two parses, one run each (comma-separated)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON lines file the run is appended to")
    args = parser.parse_args(argv)
    ensure_trace(args.trace)
    docs = documents(args.trace, args.documents)
    far = random_cycle(FAR_BYTES // 8)
    speed = machine.host_speed()
    result = {
        "benchmark": "locality",
        "speed": speed,
        "walkNsPerRead": {f"{kb}KB": round(walk_ns(kb << 10), 1) for kb in WALK_KB},
        "documents": len(docs),
        "parseUs": {str(reads): parse_us(docs, reads, far) for reads in (int(r) for r in args.reads.split(","))},
    }
    machine.record(args.results, machine.describe(), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
