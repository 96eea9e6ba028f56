"""The embedded runner on a generated 11.11 trace: events/s, peak memory, and the ratio
to a raw read-and-parse loop (orjson over the same files) measured in the same run.

    .venv/bin/python -m benchmarks.bench_embedded [--orders 1000000] [--profile]

Writes benchmarks/results/embedded-<UTC>.json and updates the table in
benchmarks/RESULTS.md. The runner runs in a child process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.machine import describe, one_line
from clearance.traces import FILE_NAMES
from pipeline.compiled import ENV, build_dir, matches, read_manifest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MD = ROOT / "benchmarks" / "RESULTS.md"
CLI = [sys.executable, "-m", "clearance.cli"]


def generate(trace: Path, orders: int, seed: int) -> float:
    if (trace / "labels.jsonl").exists():
        return 0.0
    started = time.perf_counter()
    subprocess.run(
        [*CLI, "generate", str(trace), "--preset", "peak-hour", "--orders", str(orders), "--seed", str(seed)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def raw_loop(trace: Path) -> dict[str, Any]:
    """Read every line of the three files and orjson.loads it: the floor of any Python pipeline."""
    started, cpu_started = time.perf_counter(), time.process_time()
    count = 0
    for name in FILE_NAMES:
        with (trace / name).open("rb") as handle:
            for line in handle:
                with contextlib.suppress(orjson.JSONDecodeError):
                    orjson.loads(line)
                count += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "messages": count,
        "seconds": round(seconds, 3),
        "eventsPerSecond": round(count / seconds, 1),
        "cpuSeconds": round(cpu, 3),
        "eventsPerCpuSecond": round(count / cpu, 1),
    }


def runner(trace: Path, out: Path, extra: list[str], *, sources: bool = False) -> dict[str, Any]:
    """`clearance run` in a child process; `sources`: the core from its Python sources (CLEARANCE_NATIVE=0)."""
    started = time.perf_counter()
    env = {**os.environ, ENV: "0"} if sources else None
    proc = subprocess.Popen(
        [*CLI, "run", "--input", str(trace), "--output", str(out), "--progress", "never", "--quiet", *extra], env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"clearance run failed with status {status}")
    summary = orjson.loads((out / "summary.json").read_bytes())
    return {
        "messages": summary["messages"],
        "seconds": summary["seconds"],
        "wallSecondsWithStartup": round(seconds, 3),
        "eventsPerSecond": summary["eventsPerSecond"],
        "peakRssMB": round(usage.ru_maxrss / 1024, 1),
        "cpuSeconds": round(usage.ru_utime + usage.ru_stime, 3),  # start-up included
        "eventsPerCpuSecond": round(summary["messages"] / (usage.ru_utime + usage.ru_stime), 1),
        "declarations": summary["declarations"],
        "deadLetters": summary["deadLetters"],
    }


def cpu_rounds(trace: Path, out: Path, rounds: int) -> list[dict[str, Any]]:
    """Events per CPU-second of `clearance run` (the child's rusage) against the raw loop
    (process time) on either side of it: on a machine shared with other jobs, wall time
    measures the neighbours, and CPU time measured side by side is the fairer ratio."""
    rows = []
    compare = compiled_core()  # then the sources run in every round too: before and after, side by side
    for index in range(rounds):
        before, run = raw_loop(trace), runner(trace, out / str(index), [])
        plain = runner(trace, out / f"{index}-sources", [], sources=True) if compare else None
        after = raw_loop(trace)
        raw_rate = (before["eventsPerCpuSecond"] + after["eventsPerCpuSecond"]) / 2
        row = {"rawEventsPerCpuSecond": round(raw_rate), "runEventsPerCpuSecond": run["eventsPerCpuSecond"]}
        row["ratio"] = round(run["eventsPerCpuSecond"] / raw_rate, 4)
        if plain is not None:
            row["sourcesEventsPerCpuSecond"] = plain["eventsPerCpuSecond"]
            row["sourcesRatio"] = round(plain["eventsPerCpuSecond"] / raw_rate, 4)
            row["compiledOverSources"] = round(run["eventsPerCpuSecond"] / plain["eventsPerCpuSecond"], 3)
        print(f"cpu round {index + 1}: {row}", file=sys.stderr)
        rows.append(row)
    return rows


def compiled_core() -> bool:
    """True when `clearance run` here loads the compiled core (pipeline/compiled.py)."""
    if os.environ.get(ENV) == "0":
        return False
    built = read_manifest(build_dir())
    return built is not None and matches(built, ROOT / "pipeline")


def profile(trace: Path, out: Path, stamp: str) -> Path:
    path = RESULTS / f"embedded-{stamp}-profile.txt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "-o",
            str(path),
            "-m",
            "clearance.cli",
            "run",
            "--input",
            str(trace),
            "--output",
            str(out),
            "--progress",
            "never",
            "--quiet",
        ],
        check=True,
    )
    return path


def update_table(results: dict[str, Any], json_path: Path) -> None:
    raw, rocks, memory = results["raw"], results["rocksdict"], results["memory"]
    row = (
        f"| {results['startedAt'][:16]} | {one_line(results['machine'])} | {results['orders']:,} / {raw['messages']:,} "
        f"| {raw['eventsPerSecond']:,.0f} | {rocks['eventsPerSecond']:,.0f} ({results['ratioToRaw']:.3f}) "
        f"| {memory['eventsPerSecond']:,.0f} | {rocks['peakRssMB']:,.0f} | {json_path.name} |"
    )
    start, end = "<!-- embedded-table:start -->", "<!-- embedded-table:end -->"
    header = (
        "| run (UTC) | machine | orders / messages | raw read+parse events/s | embedded rocksdict events/s (x raw) "
        "| embedded memory-store events/s | peak RSS MB | file |\n|---|---|---|---|---|---|---|---|"
    )
    text = MD.read_text(encoding="utf-8") if MD.exists() else "# Benchmark results\n"
    if start not in text:
        text += f"\n## Embedded runner (`python -m benchmarks.bench_embedded`)\n\n{start}\n{header}\n{end}\n"
    head, rest = text.split(start, 1)
    table, tail = rest.split(end, 1)
    lines = [line for line in table.strip().splitlines() if line]
    MD.write_text(f"{head}{start}\n" + "\n".join([*lines, row]) + f"\n{end}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--trace", type=Path, help="trace directory (generated there if absent)")
    parser.add_argument("--profile", action="store_true", help="also profile one run with pyinstrument")
    parser.add_argument(
        "--cpu-rounds",
        type=int,
        default=0,
        help="also N interleaved rounds of raw loop, clearance run, raw loop in CPU time (a shared machine); "
        "with the core compiled, each round also runs it from the sources (CLEARANCE_NATIVE=0)",
    )
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = Path(tempfile.gettempdir())
    trace = args.trace or scratch / f"clearance-bench-{args.orders}-{args.seed}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    gen_seconds = generate(trace, args.orders, args.seed)
    out = scratch / f"clearance-bench-out-{stamp}"
    results: dict[str, Any] = {
        "startedAt": datetime.now(UTC).isoformat(),
        "machine": describe(),
        "orders": args.orders,
        "generateSeconds": round(gen_seconds, 2),
        "raw": raw_loop(trace),
        "rocksdict": runner(trace, out / "rocks", []),
        "memory": runner(trace, out / "memory", ["--memory"]),
    }
    results["ratioToRaw"] = round(results["rocksdict"]["eventsPerSecond"] / results["raw"]["eventsPerSecond"], 4)
    if args.cpu_rounds:
        results["cpuRounds"] = cpu_rounds(trace, out / "cpu", args.cpu_rounds)
    if args.profile:
        results["profile"] = str(profile(trace, out / "profile", stamp).relative_to(ROOT))
    json_path = RESULTS / f"embedded-{stamp}.json"
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    update_table(results, json_path)
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
