"""Faust's floor in its variants, alternated on the same input: does batching help Faust?

The issue asks for batches inside the agents (`take_events`) "if it measurably helps". Faust's
`take_events` fills its batch from the same per-message path (the fetcher's futures, the
conductor, the stream iterator) and adds a processor call per event, so what it could save is
only what the agent does per event after that path. This measures it where nothing else
weighs in: the bare agent of case f (benchmarks/faustfloor.py) in each variant, over one
loaded trace, round by round, each run with a consumer group of its own.

    python -m benchmarks.floors --orders 20000 --rounds 3

Prints one line per run and the medians per variant (events/s and events per CPU-s of the
agent's process, from its first message); appends one JSON object per run to --results
(benchmarks/results/floors.jsonl).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.faustfloor import VARIANTS, faust_floor  # noqa: E402
from benchmarks.runs import TraceInfo  # noqa: E402
from benchmarks.suite import delete_run_topics, peak_trace, run_settings  # noqa: E402
from clearance.kafka import KafkaUnavailable, probe  # noqa: E402
from clearance.settings import Settings  # noqa: E402
from clearance.topics import ensure_topics  # noqa: E402
from ops.replay import replay  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "floors.jsonl")
    args = parser.parse_args(argv)
    base = Settings.from_env().with_overrides(partitions=args.partitions, log_level="WARNING")
    try:
        probe(base)  # one line and exit 1 without a broker, as every command does (not a retry loop)
    except KafkaUnavailable as exc:
        print(f"{Path(sys.argv[0]).stem}: {exc}", file=sys.stderr)
        return 1
    run = uuid.uuid4().hex[:6]
    loaded = run_settings(base, run, "in", "floors", app_id=f"floors-{run}")
    work = Path(tempfile.mkdtemp(prefix="clearance-floors-"))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {}
    per_cpu: dict[str, list[float]] = {}
    try:
        trace = peak_trace(work, args.orders, args.seed)
        info = TraceInfo.scan(trace)
        ensure_topics(loaded)
        replay(trace, loaded)
        loaded_line = f"loaded {info.messages:,} messages ({info.orders:,} orders) into {args.partitions} partitions"
        print(loaded_line, flush=True)
        for round_no in range(1, args.rounds + 1):
            for variant in args.variants:
                figures = faust_floor(loaded, info.messages, work / f"{variant}-{round_no}", variant=variant)
                record: dict[str, Any] = {
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "round": round_no,
                    "orders": info.orders,
                    "partitions": args.partitions,
                    **figures,
                }
                with args.results.open("ab") as out:
                    out.write(orjson.dumps(record) + b"\n")
                rates.setdefault(variant, []).append(figures["eventsPerSecond"])
                per_cpu.setdefault(variant, []).append(figures["eventsPerCpuSecond"])
                print(
                    f"round {round_no} {variant}: {figures['eventsPerSecond']:,.0f} events/s, "
                    f"{figures['eventsPerCpuSecond']:,.0f} per CPU-s",
                    flush=True,
                )
    finally:
        delete_run_topics([loaded])
        shutil.rmtree(work, ignore_errors=True)
    for variant in args.variants:
        if variant in rates:
            print(
                f"{variant}: median {statistics.median(rates[variant]):,.0f} events/s, "
                f"{statistics.median(per_cpu[variant]):,.0f} per CPU-s ({len(rates[variant])} runs)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
