"""`clearance bench`: the Kafka benchmark suite on the local broker, one command.

Cases, all on one generated trace (`clearance generate --preset peak-hour`):
  a  raw limit: confluent-kafka consume + orjson.loads of every input message
  b  the embedded runner (no broker) on the same trace files
  c  one Faust worker process, pre-loaded topics: start it, time until every declaration is out
  d  `clearance worker --processes 2` (two processes, one consumer group), same pre-loaded topics
  e  one worker process at a fixed offered rate: end-to-end latency, once per rate of
     `--order-rate` (default 1,000 orders/s, the goal's rate, as "e", and 3,000 as "e3000")
  f  Faust's floor: a bare Faust agent that only reads, parses and acks the same input topics
  t  (not in the default set) case f given what the worker gives Faust: uvloop, the Cython
     stream iterator, the raw schema, the quiet monitor and the consumer that finishes a
     message's callback in place (benchmarks/faustfloor.py "tuned"):
     the part of c's cost that is Faust's path as the worker runs it
  s  the soak (not in the default set): one worker's resident memory against the orders it
     declared, then after every window closed (benchmarks/soak.py; `--cases s --orders 100000`,
     the trace offered at 1,000 messages/s; `--soak-rate 0` offers it all at once)
Ratios of the same run: c/f, c/a, d/c, c/t (and every case x a). The default trace (50,000 orders,
about 150,000 messages) is long enough that start-up does not dominate. `--rounds N` runs a, f, t,
b, c and d N times, a round after a round, and takes each ratio within a round (benchmarks/rounds.py):
the host's speed moves within the hour, and a ratio of cases run minutes apart says it.
Writes benchmarks/results/<timestamp>.json and .png and updates benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from benchmarks import machine, report, rounds
from benchmarks.rawlimit import consume_and_parse
from benchmarks.runs import TraceInfo, worker_case
from benchmarks.soak import plot as soak_plot
from benchmarks.soak import soak_case
from benchmarks.workers import worker_available
from clearance.kafka import KafkaUnavailable, client_config, probe
from clearance.settings import LOG_LEVELS, Settings
from clearance.topics import ensure_topics
from embedded.runner import run_trace
from ops.broker import BrokerError, broker_pid, default_home, start_broker
from ops.files import broker_files
from ops.replay import replay

HERE = Path(__file__).resolve().parent
CASES = "abcdef"
DEFAULT_ORDERS = 50_000
# Three rounds by default: this VM's speed moves within the hour, and one round's ratios moved
# across the goals' lines with it (benchmarks/rounds.py). A full run takes ~14 min instead of ~10.
DEFAULT_ROUNDS = 3
# Case s offers the trace at a park's pace, the pace issue 13 measured memory at (messages/s).
SOAK_RATE = 1000.0


def _ensure_broker(settings: Settings) -> int | None:
    """Start the local broker unless KAFKA_BOOTSTRAP names one; the local broker's pid (None: another)."""
    if "KAFKA_BOOTSTRAP" in os.environ:
        return None
    files = broker_files(default_home(settings), settings.broker_port)
    if start_broker(files):
        print(f"started the local broker on {files.bootstrap}", file=sys.stderr)
    return broker_pid(files)


def peak_trace(work: Path, orders: int, seed: int) -> Path:
    """A peak-hour trace from `clearance generate`, cached by size and seed."""
    target = Path(tempfile.gettempdir()) / "clearance-bench" / f"peak-hour-{orders}-{seed}"
    if not (target / "trace.json").exists():
        from tracegen.generator import cli as generate

        code = generate([str(target), "--preset", "peak-hour", "--orders", str(orders), "--seed", str(seed)])
        if code != 0:
            raise RuntimeError(f"clearance generate failed ({code})")
    return target


def run_settings(base: Settings, run: str, inputs: str, outputs: str, **over: Any) -> Settings:
    """The run's topic names: the three document topics shared by the cases that read the
    pre-loaded trace (`inputs`), every other topic the case's own (`outputs`).

    The ticks are the case's own too: a worker case ends with flush ticks past every window
    and the retention, and a later case reading the same tick topic from its start applied
    them first, before most of its documents (case d declared 20,000 to 22,000 of 50,000
    orders, one to three times each, at "2 x" the speed of case c, until 3 December)."""
    names = {}
    for f in fields(base):
        if f.name.startswith("topic_"):
            group = inputs if f.name in {"topic_orders", "topic_payments", "topic_waybills"} else outputs
            names[f.name] = f"{getattr(base, f.name)}.bench-{run}-{group}"
    return base.with_overrides(**names, **over)


def _case_b(trace: Path, settings: Settings, work: Path) -> dict[str, Any]:
    cpu = time.process_time()
    summary = run_trace(trace, work / "embedded-out", settings.rules(), state_dir=work / "embedded-state")
    cpu = time.process_time() - cpu
    out = summary.as_dict()
    return {
        "eventsPerSecond": out["eventsPerSecond"],
        "cpuSeconds": round(cpu, 2),
        "eventsPerCpuSecond": round(out["messages"] / cpu, 1) if cpu > 0 else 0.0,
        "messages": out["messages"],
        "seconds": out["seconds"],
        "declarations": out["declarations"],
        "deadLetters": out["deadLetters"],
    }


def _expected(out_dir: Path) -> tuple[int, int, frozenset[str]]:
    """(declarations decided on completion, all declarations, every `declarationId/status`) in
    the embedded runner's output: what every worker case must publish too."""
    complete = total = 0
    ids: set[str] = set()
    for name in ("matched.jsonl", "flagged.jsonl"):
        for line in (out_dir / name).read_bytes().splitlines():
            record = orjson.loads(line)
            total += 1
            complete += not any(r.startswith("MISSING_") for r in record["reasons"])
            ids.add(f"{record['declarationId']}/{record['status']}")
    return complete, total, frozenset(ids)


def delete_run_topics(settings_list: list[Settings]) -> None:
    """Delete every topic the runs with these settings named, and every topic of their app ids."""
    admin = AdminClient(client_config(settings_list[0]))
    prefixes = {s.app_id for s in settings_list}
    names = {getattr(s, f.name) for s in settings_list for f in fields(s) if f.name.startswith("topic_")}
    existing = admin.list_topics(timeout=10).topics
    doomed = [t for t in existing if t in names or any(t.startswith(p) for p in prefixes)]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.exception()


def _render_profiles(results: Path, stamp: str) -> None:
    """Each saved pyinstrument session as text next to it (application frames; library frames folded)."""
    for session in results.glob(f"{stamp}-profile-*.pyisession"):
        command = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text"]
        command += ["-o", str(session.with_suffix(".txt"))]
        subprocess.run(command, check=False)  # noqa: S603 - our own interpreter and file


DEFAULT_ORDER_RATES = (1000.0, 3000.0)


def order_rates(text: str) -> tuple[float, ...]:
    """`--order-rate`: "1000" or "1000,3000" -> positive rates, in the order given, no repeats."""
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate or a comma-separated list of rates: {text!r}") from None
    if any(not math.isfinite(rate) or rate <= 0 for rate in rates) or len(set(rates)) != len(rates):
        raise argparse.ArgumentTypeError(f"rates must be positive, finite and distinct: {text!r}")
    return rates


def latency_cases(rates: tuple[float, ...]) -> list[tuple[str, float]]:
    """Case e's runs: (name, offered orders/s); the first rate is "e", each further rate R "eR"."""
    return [("e" if i == 0 else f"e{rate:g}", rate) for i, rate in enumerate(rates)]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearance bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=int, default=DEFAULT_ORDERS, help=f"orders in the trace (default {DEFAULT_ORDERS:,})"
    )
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--partitions", type=int, default=12, help="partitions of every topic (default 12)")
    parser.add_argument(
        "--order-rate",
        type=order_rates,
        default=DEFAULT_ORDER_RATES,
        help="case e's offered orders/s, one run per rate, comma-separated (default 1000,3000: the first is "
        '"e", judged against the goal; each further rate R is "eR")',
    )
    parser.add_argument(
        "--e-processes",
        type=_positive,
        default=1,
        help="case e's worker processes (default 1: the goal's one worker process; `clearance worker` "
        "itself runs one per core unless told otherwise); the p99 goal is judged for 1 only",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=SOAK_RATE,
        help=f"case s: offer the trace at this many messages/s (default {SOAK_RATE:,.0f}, a park's pace, "
        "as issue 13 measured; 0: all at once, a backlog)",
    )
    parser.add_argument("--cases", default=CASES, help=f"which cases to run (default {CASES})")
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=DEFAULT_ROUNDS,
        help="run cases a, f, t, b, c and d this many times, a round after a round, and take each ratio "
        "within a round (the median of the rounds'; each case's figures its median round's). Case e and s "
        f"run once, after the rounds. Default {DEFAULT_ROUNDS}; 1 for a quicker run",
    )
    parser.add_argument("--profile", action="store_true", help="run case c's worker under pyinstrument")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        help="the workers' log level (default WARNING); each case's log is worker.log in its work directory, "
        "kept with --keep",
    )
    parser.add_argument(
        "--untold-end",
        action="store_true",
        help="cases c and d: do not tell the workers where the pre-loaded input ends (end-of-topic ticks); "
        "their merge then waits for the topics to fall silent (CLEARANCE_MERGE_WAIT_SECONDS) before it "
        "applies each partition's last documents, as every run before 5 December, 17:20 did",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where the JSON and PNG go")
    parser.add_argument("--no-table", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark topics and the work directory")
    return parser


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run = uuid.uuid4().hex[:6]
    base = Settings.from_env().with_overrides(partitions=args.partitions, log_level=args.log_level)
    try:
        broker = _ensure_broker(base)
        probe(base)
    except BrokerError as exc:
        print(f"clearance bench: no broker: {exc}", file=sys.stderr)
        return 1
    except KafkaUnavailable as exc:
        print(f"clearance bench: {exc}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix=f"clearance-bench-{stamp}-"))
    args.results.mkdir(parents=True, exist_ok=True)
    trace = peak_trace(work, args.orders, args.seed)
    info = TraceInfo.scan(trace)
    print(f"trace {trace}: {info.messages:,} messages, {info.orders:,} orders", file=sys.stderr)

    loaded = run_settings(base, run, "in", "a", app_id=f"bench-{run}-a")
    used = [loaded]
    results: dict[str, Any] = {
        "timestamp": started.isoformat(timespec="seconds"),
        "machine": {**machine.describe(), "speed": machine.host_speed()},  # before any case loads the box
        "parameters": {
            "orders": info.orders,
            "messages": info.messages,
            "seed": args.seed,
            "partitions": args.partitions,
            "offeredOrderRate": args.order_rate[0],
            "offeredOrderRates": list(args.order_rate),
            "cases": args.cases,
            "rounds": args.rounds,
        },
        "cases": {},
    }
    cases: dict[str, dict[str, Any]] = results["cases"]

    def attempt(name: str, body: Callable[[], dict[str, Any]], label: str = "") -> None:
        print(f"case {name}{label} ...", file=sys.stderr)
        began = time.monotonic()
        try:
            cases[name] = body()
        except Exception as exc:  # noqa: BLE001 - one failed case must not lose the others
            traceback.print_exc()
            cases[name] = {"status": f"failed: {type(exc).__name__}: {exc}"}
        cases[name].setdefault("status", "ok")
        cases[name]["wallSeconds"] = round(time.monotonic() - began, 1)
        print(f"case {name}{label}: {report.brief(cases[name])}", file=sys.stderr)

    def worker(name: str, processes: int, rate: float | None, where: Path, suffix: str = "", label: str = "") -> None:
        if not worker_available():
            cases[name] = {"status": "not run: worker not available"}
            return
        inputs = "in" if rate is None else f"{name}-in"
        settings = run_settings(base, run, inputs, name + suffix, app_id=f"bench-{run}-{name}{suffix}")
        used.append(settings)
        profiled = args.profile and name == "c" and suffix in ("", "-r1")  # the first round's c only
        profile = args.results / f"{stamp}-profile-{name}.pyisession" if profiled else None
        body = partial(
            worker_case,
            settings,
            trace,
            info,
            where / name,
            processes=processes,
            order_rate=rate,
            profile=profile,
            broker=broker,
            tell_end=not args.untold_end,
        )
        attempt(name, body, label)

    try:
        needs_load = any(c in args.cases for c in "acdft")
        if needs_load:
            ensure_topics(loaded)
            pre = replay(trace, loaded)
            results["preload"] = pre.as_dict()
        if any(c in args.cases for c in "ft"):
            from benchmarks.faustfloor import faust_floor  # imports Faust: only when case f or t runs
        runs: dict[str, list[dict[str, Any]]] = {}
        speeds = [results["machine"]["speed"]]
        for turn in range(1, args.rounds + 1):
            # Each round runs a, f, t, b, c, d in turn, in a directory (and with worker topics) of its own
            several = args.rounds > 1
            where = work / f"round-{turn}" if several else work
            suffix, label = (f"-r{turn}", f" (round {turn} of {args.rounds})") if several else ("", "")
            if turn > 1:
                speeds.append(machine.host_speed())
            if "a" in args.cases:
                attempt("a", partial(consume_and_parse, loaded, info.messages), label)
            if "f" in args.cases:
                attempt("f", partial(faust_floor, loaded, info.messages, where / "f"), label)
            if "t" in args.cases:
                attempt("t", partial(faust_floor, loaded, info.messages, where / "t", variant="tuned"), label)
            if turn == 1 or "b" in args.cases:  # the first round's gives the output every worker case must match
                attempt("b", partial(_case_b, trace, base, where), label)
            if turn == 1:  # what every worker case must publish: the embedded runner's output
                embedded = where / "embedded-out"
                complete, total, ids = _expected(embedded) if embedded.exists() else (0, 0, frozenset())
                info.expected_complete, info.expected_total, info.expected_ids = complete, total, ids
            for name, processes in (("c", 1), ("d", 2)):
                if name in args.cases:
                    worker(name, processes, None, where, suffix, label)
            for name in rounds.ROUND_CASES:
                if name in cases:
                    runs.setdefault(name, []).append(cases.pop(name))
        for name, each in runs.items():
            cases[name] = rounds.merge(each)
        if args.rounds > 1:
            results["machine"]["speedByRound"] = speeds
        for name, rate in latency_cases(args.order_rate):
            if name[0] in args.cases:
                worker(name, args.e_processes, rate, work)
        if "s" in args.cases:
            soaked = run_settings(base, run, "s-in", "s", app_id=f"bench-{run}-s")
            used.append(soaked)
            attempt("s", partial(soak_case, soaked, trace, info, work / "s", rate=args.soak_rate))
            soak_png = soak_plot(
                cases["s"], args.results / f"{stamp}-soak.png", f"soak {stamp}: {info.orders:,} orders"
            )
            if soak_png:
                print(f"soak plot: {soak_png}", file=sys.stderr)
        _render_profiles(args.results, stamp)
        # Did the host's speed move during the run? Measured before the topics are deleted, which
        # keeps the broker busy removing their logs for a while.
        results["machine"]["speedAfter"] = machine.host_speed()
    finally:
        if not args.keep:
            delete_run_topics(used)
            shutil.rmtree(work, ignore_errors=True)
    report.add_ratios(results)
    json_path = args.results / f"{stamp}.json"
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    png = report.plot(results, args.results / f"{stamp}.png")
    if not args.no_table:
        report.update_table(HERE / "RESULTS.md", results, json_path, png)
    print(report.render(results))
    print(f"results: {json_path}" + (f", plot {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
