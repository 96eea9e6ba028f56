"""Stress: two workers started together on a broker reused between runs (not in CI).

Each run does what a load tester does between replays, on the broker at KAFKA_BOOTSTRAP:
delete the pipeline's topics (inputs, ticks, outputs, dead letters and, with
`--recreate all`, the worker's internal topics), create them again, keep the consumer
group, start two `clearance worker` processes at the same moment (each with its own
data directory, kept between runs unless `--fresh-data`), wait, replay a trace as fast as
the producer goes, wait until the group committed every input offset, send the
end-of-input flush ticks, stop both workers with SIGTERM and compare every declaration with
`clearance run`'s on the same trace.

    .venv/bin/python benchmarks/stress_two_workers.py --runs 20 --orders 2260

Prints one line per run and a last line `N runs, K failed`; exit 1 when any run failed.
The workers' INFO logs and the declarations of every run stay in --out for a post-mortem.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.topics import internal_specs  # noqa: E402
from clearance.kafka import admin_config, client_config, producer_config  # noqa: E402
from clearance.settings import Settings  # noqa: E402
from clearance.topics import ensure_topics, topic_specs  # noqa: E402
from ops.marks import produce_ticks  # noqa: E402
from ops.replay import replay  # noqa: E402

CLI = [sys.executable, "-m", "clearance.cli"]
FLUSH_MS = 40 * 86_400_000


def _delete_topics(settings: Settings, internal: bool) -> None:
    admin = AdminClient(admin_config(settings))
    names = [s.name for s in topic_specs(settings)]
    if internal:
        names += [s.name for s in internal_specs(settings)] + [f"{settings.app_id}-__assignor-__leader"]
    existing = set(admin.list_topics(timeout=30).topics)
    doomed = [n for n in names if n in existing]
    for future in admin.delete_topics(doomed, operation_timeout=30).values() if doomed else ():
        future.exception()
    deadline = time.monotonic() + 60
    while set(doomed) & set(admin.list_topics(timeout=30).topics):
        if time.monotonic() > deadline:
            raise SystemExit(f"topics not deleted in 60 s: {doomed}")
        time.sleep(0.5)


def _start(settings: Settings, name: str, data: Path, port: int, out: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    env.update(
        KAFKA_BOOTSTRAP=settings.bootstrap,
        CLEARANCE_DATA_DIR=str(data),
        CLEARANCE_WEB_PORT=str(port),
        CLEARANCE_PARTITIONS=str(settings.partitions),
        CLEARANCE_LOG_LEVEL="INFO",
        CLEARANCE_PROCESSES="1",  # one Faust process per spawn: the stress runs start two spawns
        CLEARANCE_TRACE_FILE=str(out / f"{name}.trace"),
    )
    log = (out / f"{name}.log").open("ab")
    return subprocess.Popen([*CLI, "worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def _committed_all(settings: Settings) -> tuple[int, int]:
    """(sum of committed offsets, sum of high watermarks) of the group on the input topics."""
    consumer = Consumer({**client_config(settings), "group.id": settings.app_id})
    try:
        tps = [TopicPartition(t, p) for t in settings.input_topics for p in range(settings.partitions)]
        committed = consumer.committed(tps, timeout=30)
        done = sum(max(tp.offset, 0) for tp in committed)
        high = sum(consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps)
        return done, high
    finally:
        consumer.close()


def _consume(settings: Settings, want: int, quiet_s: float = 8.0, timeout: float = 300.0) -> list[dict[str, Any]]:
    topics = [settings.topic_matched, settings.topic_flagged]
    consumer = Consumer(
        {**client_config(settings), "group.id": f"stress-{time.time_ns()}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(settings.partitions)])
    out: list[dict[str, Any]] = []
    last = start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if len(out) >= want and time.monotonic() - last > quiet_s:
                    break
                continue
            last = time.monotonic()
            record = orjson.loads(msg.value())
            record["_partition"] = msg.partition()
            out.append(record)
    finally:
        consumer.close()
    return out


def _expected(trace: Path, out: Path) -> list[dict[str, Any]]:
    target = out / "embedded"
    if not (target / "matched.jsonl").exists():
        cmd = [*CLI, "run", "--input", str(trace), "--output", str(target), "--quiet", "--memory"]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    lines = [line for n in ("matched", "flagged") for line in (target / f"{n}.jsonl").read_bytes().splitlines()]
    return [orjson.loads(line) for line in lines]


def _compare(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[Counter[str], Counter[int]]:
    """Differences by kind, and the partitions of the wrong declarations."""
    want = {(d["orderNo"], d["declarationId"]): d for d in expected}
    have = {(d["orderNo"], d["declarationId"]): d for d in got}
    diff: Counter[str] = Counter()
    where: Counter[int] = Counter()
    diff["missing"] = len(set(want) - set(have))
    for k in set(have) - set(want):
        diff["extra"] += 1
        where[have[k]["_partition"]] += 1
    for k in set(want) & set(have):
        w, h = want[k], have[k]
        if (w["status"], w["reasons"]) != (h["status"], h["reasons"]):
            key = "quota_order" if set(w["reasons"]) ^ set(h["reasons"]) == {"ANNUAL_QUOTA_EXCEEDED"} else "differ"
            diff[key] += 1
    return diff, where


def one_run(args: argparse.Namespace, settings: Settings, trace: Path, expected: list[dict[str, Any]], i: int) -> bool:
    out = args.out / f"run{i:02d}"
    out.mkdir(parents=True, exist_ok=True)
    _delete_topics(settings, internal=args.recreate == "all")
    ensure_topics(settings)
    dirs = [args.out / "w1", args.out / "w2"]
    if args.fresh_data:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    procs = [_start(settings, f"w{n + 1}", d, 7100 + n, out) for n, d in enumerate(dirs)]
    ok = False
    try:
        time.sleep(args.wait)
        replay(trace, settings)
        deadline = time.monotonic() + 300
        while True:
            done, high = _committed_all(settings)
            if done >= high:
                break
            if time.monotonic() > deadline:
                print(f"run {i}: group committed {done} of {high} input offsets in 300 s", flush=True)
                break
            time.sleep(1)
        producer = Producer(producer_config(settings))
        produce_ticks(producer, settings, args.trace_max_ms + FLUSH_MS)
        producer.flush(30)
        got = _consume(settings, len(expected))
        (out / "declarations.json").write_bytes(orjson.dumps(got))
        diff, where = _compare(expected, got)
        wrong = {k: v for k, v in diff.items() if v and (k != "quota_order" or args.strict_quota)}
        ok = not wrong
        print(f"run {i}: {'ok' if ok else 'FAILED'} {dict(diff)} extra by partition {dict(where)}", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL if args.stop == "kill" else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--orders", type=int, default=2260)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wait", type=float, default=25.0, help="seconds between the workers' start and the replay")
    parser.add_argument("--recreate", choices=["inputs", "all"], default="all")
    parser.add_argument("--fresh-data", action="store_true", help="empty data directories at every run")
    parser.add_argument("--stop", choices=["term", "kill"], default="term", help="how the workers end a run")
    parser.add_argument(
        "--strict-quota",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a different ANNUAL_QUOTA_EXCEEDED verdict fails the run (the quota in event-time order)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "stress-two-workers")
    args = parser.parse_args()
    settings = Settings.from_env()
    args.out.mkdir(parents=True, exist_ok=True)
    trace = args.out / "trace"
    if not (trace / "orders.jsonl").exists():
        cmd = [*CLI, "generate", str(trace), "--preset", "peak-hour", "--orders", str(args.orders)]
        subprocess.run([*cmd, "--seed", str(args.seed)], cwd=ROOT, check=True, capture_output=True)
    expected = _expected(trace, args.out)
    from datetime import datetime

    args.trace_max_ms = int(max(datetime.fromisoformat(d["eventTime"]).timestamp() for d in expected) * 1000)
    failed = sum(not one_run(args, settings, trace, expected, i) for i in range(args.runs))
    print(f"{args.runs} runs, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
