"""The deadline index with 7 days of retained orders: in memory or spilled to disk (issue 13).

A worker's join partitions index one retention deadline per decided order for 7 days
(pipeline/timeline.py). This schedules N of them in order over 12 partitions (default
4,500,000: a park's 650,000 a day for a week), as the decisions do, then pops them all, once
with the core's default (the run's chunks in memory) and once with the worker's spill
(agents/spill.py, one RocksDB database per partition with the tables' shared cache).
Each mode runs in a fresh child process. Measured: resident memory after scheduling against
before, and microseconds per schedule and per pop.

    python -m benchmarks.spill [--orders 4500000]

Prints one JSON object per mode and appends it to --results (benchmarks/results/spill.jsonl).
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from agents.spill import Spills
from agents.stores import SharedMemory
from benchmarks.machine import describe, record
from benchmarks.measure import vm_kb
from pipeline.timeline import Timeline

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 12
RETENTION_MS = 7 * 24 * 3600 * 1000
_MIB = 1024 * 1024


def _rss_mb() -> float:
    return round(vm_kb(os.getpid(), "VmRSS") / 1024, 1)


def measure(mode: str, orders: int, work: Path) -> dict[str, Any]:
    """In this process: schedule `orders` retention deadlines over the partitions, then pop them."""
    spills = Spills(work / "deadline-spill", SharedMemory()) if mode == "disk" else None
    opened = [spills.open(p) for p in range(PARTITIONS)] if spills else [None] * PARTITIONS
    timelines = [Timeline(spill=spill) for spill in opened]
    gc.collect()
    before = _rss_mb()
    started = time.perf_counter()
    decided_ms = 1_762_790_400_000  # 11.11, 00:00 CST
    for i in range(orders):
        # One decision every ~0.13 s of event time, as 650,000 a day; order numbers as the trace's.
        timelines[i % PARTITIONS].schedule(decided_ms + i * 133 + RETENTION_MS, f"HZ20261111{i:09d}")
    scheduled_s = time.perf_counter() - started
    gc.collect()
    after = _rss_mb()
    started = time.perf_counter()
    popped = sum(len(t.due(decided_ms + orders * 133 + RETENTION_MS + 1)) for t in timelines)
    popped_s = time.perf_counter() - started
    for spill in opened:
        if spill is not None:
            spill.close()
    if popped != orders:
        raise SystemExit(f"{mode}: popped {popped} of {orders}")
    return {
        "mode": mode,
        "orders": orders,
        "rssBeforeMB": before,
        "rssGrowthMB": round(after - before, 1),
        "bytesPerOrder": round((after - before) * _MIB / orders, 1),
        "usPerSchedule": round(scheduled_s / orders * 1e6, 2),
        "usPerPop": round(popped_s / orders * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=4_500_000)
    parser.add_argument("--modes", nargs="+", choices=("memory", "disk"), default=["memory", "disk"])
    parser.add_argument("--child", choices=("memory", "disk"), help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "spill.jsonl")
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="clearance-spill-") as work:
            sys.stdout.write(orjson.dumps(measure(args.child, args.orders, Path(work))).decode() + "\n")
        return 0
    machine = describe()
    for mode in args.modes:
        command = [sys.executable, "-m", "benchmarks.spill", "--child", mode, "--orders", str(args.orders)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout  # noqa: S603
        record(args.results, machine, orjson.loads(out.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
