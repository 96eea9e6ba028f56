"""Restore after kill -9 (issue 13, item 4): time to ready and records/s restored.

Two cases, on the broker at KAFKA_BOOTSTRAP, each on topics and a consumer group of its own:

`cold`: the three tables' changelog topics are filled with N join keys (records of the
size the worker writes), N/5 quota keys and one clock key per partition, straight from a
librdkafka producer in the worker's format (raw bytes, the partition the worker would
use). Then one `clearance worker` starts on an empty data directory, which is what a
restart after kill -9 is (agents/worker.py deletes the local tables when no clean-stop
marker is there). Measured: seconds from spawn to /readyz 200, and the restore phase
from the worker's own log (Faust's "Highwater for active changelog partitions" line, the
first step of its recovery, to "Restore complete!"), records/s = records restored / that
phase. After a SIGTERM the local tables are opened and their keys counted: every key
must be there.

`standby`: the same changelogs, two workers (CLEARANCE_STANDBY_REPLICAS as given),
both ready and idle (standbys warm), then kill -9 one. Measured on the survivor's log:
from the kill to the start of its rebalance (the group's session timeout detects the
death, CLEARANCE_SESSION_TIMEOUT_SECONDS) and from there to "Worker ready" (the restore
of the dead worker's partitions), and the records its recovery read.

    python -m benchmarks.restore cold --keys 100000 1000000
    python -m benchmarks.restore standby --keys 100000 --standby-replicas 0 1

Prints one JSON object per measurement and appends it to --results
(benchmarks/results/restore.jsonl); the worker logs and data stay in --work.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from agents.topics import TABLES, changelog_topic, ensure_internal_topics
from benchmarks.suite import delete_run_topics
from benchmarks.workers import Worker, settings_env, start_worker
from clearance.kafka import producer_config
from clearance.settings import Settings
from clearance.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
_FAST = re.compile(r"fast restore: (\d+) records")
JOIN_VALUE_BYTES = 420  # a join state with its three documents' fields and an outbox entry, as JSON
QUOTA_VALUE_BYTES = 90


# ---------------------------------------------------------------- changelogs


def _value(key: bytes, size: int) -> bytes:
    body = orjson.dumps({"k": key.decode(), "v": 0})
    return body[:-1] + b',"pad":"' + b"x" * max(size - len(body) - 9, 0) + b'"}'


def fill_changelogs(settings: Settings, keys: int) -> dict[str, int]:
    """N join keys, N/5 quota keys, a clock key per partition; records written per table."""
    producer = Producer({**producer_config(settings), "linger.ms": 50, "batch.size": 1024 * 1024})
    parts = settings.partitions
    counts = {"join": keys, "quota": keys // 5, "clock": parts}
    for table, count in counts.items():
        topic = changelog_topic(settings, table)
        for i in range(count):
            key = b"%d" % i if table == "clock" else b"%s%012d" % (table.encode(), i)
            if table == "clock":
                value = orjson.dumps({"eventTime": 1_700_000_000_000})
            else:
                value = _value(key, JOIN_VALUE_BYTES if table == "join" else QUOTA_VALUE_BYTES)
            while True:
                try:
                    producer.produce(topic, value, key=key, partition=i % parts)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 10_000 == 0:
                producer.poll(0)
    if producer.flush(120):
        raise SystemExit("changelog records not delivered in 120 s")
    return counts


# ---------------------------------------------------------------- the worker's log


def _stamp(line: str) -> float | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007 - local, like the log


def log_events(log: Path, after: float = 0.0) -> list[tuple[float, str]]:
    """(wall time, line) of every stamped line at or after `after` (continuation lines join theirs)."""
    events: list[tuple[float, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        stamp = _stamp(line)
        if stamp is not None:
            events.append((stamp, line))
        elif events:
            events[-1] = (events[-1][0], events[-1][1] + "\n" + line)
    return [(t, line) for t, line in events if t >= after - 0.001]


def _first(events: list[tuple[float, str]], text: str, after: float = 0.0) -> float | None:
    return next((t for t, line in events if text in line and t >= after), None)


def _logtable(text: str) -> dict[tuple[str, int], int]:
    """topic, partition -> number from one of Faust's terminal log tables (ditto marks resolved)."""
    rows: dict[tuple[str, int], int] = {}
    topic = ""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[|│]", line.strip().strip("|│"))]
        if len(cells) != 3 or not cells[1].isdigit():
            continue
        topic = topic if cells[0] == "〃" else cells[0]
        rows[topic, int(cells[1])] = int(cells[2])
    return rows


def records_read(events: list[tuple[float, str]], after: float) -> int:
    """Records Faust's recovery read (highwater - start per active partition, its last round
    after `after`) plus those the worker's fast restore wrote."""
    high: dict[tuple[str, int], int] = {}
    start: dict[tuple[str, int], int] = {}
    fast = 0
    for t, line in events:
        if t < after:
            continue
        if "Highwater - Active" in line:
            high = _logtable(line)
        elif "Reading Starts At - Active" in line:
            start = _logtable(line)
        elif (match := _FAST.search(line)) is not None:
            fast += int(match.group(1))
    return fast + sum(max(h - start.get(tp, -1), 0) for tp, h in high.items())


# ---------------------------------------------------------------- local tables


def count_local_keys(tables: Path) -> dict[str, int]:
    """Keys per table in the worker's local RocksDB (the worker stopped), Faust's offset key left out."""
    from rocksdict import AccessType, Options, Rdict

    counts = dict.fromkeys(TABLES, 0)
    for path in sorted(tables.glob("*.db")):
        table = path.name.rsplit("-", 1)[0]
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            keys: Any = db.keys()  # rocksdict's stubs type neither iteration nor raw keys
            counts[table] = counts.get(table, 0) + sum(not key.startswith(b"__faust") for key in keys)
        finally:
            db.close()
    return counts


# ---------------------------------------------------------------- cases


def _settings(base: Settings, work: Path, keys: int) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        name: f"{getattr(base, name)}.restore-{suffix}"
        for name in base.__dataclass_fields__
        if name.startswith("topic_")
    }
    return base.with_overrides(app_id=f"restore-{keys}-{suffix}", data_dir=str(work / suffix), processes=1, **topics)


def _spawn(settings: Settings, log: Path, port: int, data: str, **env: str) -> Worker:
    """A worker with `settings`, its own port and data directory, INFO logs and `env` (CLEARANCE_*) on top."""
    one = replace(settings, web_port=port, data_dir=data, log_level="INFO")
    return start_worker(Settings.from_env({**settings_env(one), **env}), log)


def _ready(worker: Worker, timeout: float) -> float:
    """Poll /readyz every 50 ms; the wall time it first answered 200."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{worker.settings.web_port}/readyz"
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise SystemExit(f"worker exited with {worker.process.returncode}: see {worker.log}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own localhost URL
                if answer.status == 200:
                    return time.time()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"worker not ready in {timeout:.0f} s: see {worker.log}")


def cold(base: Settings, work: Path, keys: int, env: dict[str, str]) -> dict[str, Any]:
    settings = _settings(base, work, keys)
    ensure_topics(settings)
    ensure_internal_topics(settings)
    try:
        t0 = time.monotonic()
        counts = fill_changelogs(settings, keys)
        filled = time.monotonic() - t0
        log = work / f"cold-{keys}-{settings.app_id}.log"
        spawned = time.time()
        worker = _spawn(settings, log, base.web_port, settings.data_dir, **env)
        ready = _ready(worker, timeout=1800)
        time.sleep(0.5)
        events = log_events(log)
        began = _first(events, "Highwater for active changelog partitions")
        done = _first(events, "Restore complete!")
        records = records_read(events, 0.0)
        code = worker.stop(120)
        tables = next(Path(settings.data_dir).rglob("tables"), None)
        local = count_local_keys(tables) if tables is not None else {}
        restore_s = (done - began) if began is not None and done is not None else None
        return {
            "case": "cold",
            "keys": keys,
            "env": env,
            "records": sum(counts.values()),
            "records_read": records,
            "fill_s": round(filled, 1),
            "ready_s": round(ready - spawned, 2),
            "restore_s": round(restore_s, 2) if restore_s is not None else None,
            "records_per_s": round(records / restore_s) if restore_s else None,
            "local_keys": local,
            "complete": local == counts,
            "exit": code,
            "log": str(log),
        }
    finally:
        delete_run_topics([settings])


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _wait_idle(workers: list[Worker], quiet_s: float = 4.0, timeout: float = 1200.0) -> float:
    """Until both workers used < 5% of a core for `quiet_s` (standbys caught up); seconds waited."""
    start = time.monotonic()
    hz = os.sysconf("SC_CLK_TCK")
    quiet = 0.0
    last = sum(_cpu_ticks(w.pid) for w in workers)
    while time.monotonic() - start < timeout:
        time.sleep(1.0)
        now = sum(_cpu_ticks(w.pid) for w in workers)
        quiet = quiet + 1.0 if (now - last) / hz < 0.05 * len(workers) else 0.0
        last = now
        if quiet >= quiet_s:
            break
    return time.monotonic() - start


def standby(base: Settings, work: Path, keys: int, replicas: int, env: dict[str, str]) -> dict[str, Any]:
    settings = _settings(base, work, keys)
    ensure_topics(settings)
    ensure_internal_topics(settings)
    env = {**env, "CLEARANCE_STANDBY_REPLICAS": str(replicas)}
    started: list[Worker] = []
    try:
        counts = fill_changelogs(settings, keys)
        logs = [work / f"standby{replicas}-{keys}-{settings.app_id}-{n}.log" for n in ("victim", "survivor")]
        # The victim first: it restores everything, then hands half to the survivor, which has
        # never held the victim's partitions (Faust keeps a revoked partition's database, so a
        # survivor that held them once would only read their tail, standby or not).
        for n, log in enumerate(logs):
            data = str(Path(settings.data_dir) / f"w{n}")
            started.append(_spawn(settings, log, base.web_port + n, data, **env))
            _ready(started[-1], timeout=1800)
        warm = _wait_idle(started)
        victim, survivor = started
        killed = time.time()
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        _ready_after_rebalance(survivor, killed, timeout=600)
        time.sleep(0.5)
        events = log_events(survivor.log, killed)
        rebalance = _first(events, "generation id")
        ready = _first(events, "Worker ready", rebalance or killed)
        records = records_read(events, killed)
        detect_s = (rebalance - killed) if rebalance is not None else None
        restore_s = (ready - rebalance) if ready is not None and rebalance is not None else None
        return {
            "case": "standby",
            "keys": keys,
            "standby_replicas": replicas,
            "env": env,
            "records": sum(counts.values()),
            "warm_s": round(warm, 1),
            "detect_s": round(detect_s, 2) if detect_s is not None else None,
            "restore_s": round(restore_s, 2) if restore_s is not None else None,
            "kill_to_ready_s": round(ready - killed, 2) if ready is not None else None,
            "records_read": records,
            "records_per_s": round(records / restore_s) if restore_s else None,
            "logs": [str(p) for p in logs],
        }
    finally:
        for w in started:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGKILL)
                w.process.wait()
        delete_run_topics([settings])


def _ready_after_rebalance(worker: Worker, killed: float, timeout: float) -> None:
    """Until the survivor's log says it is ready again after a rebalance that began after the kill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = log_events(worker.log, killed)
        rebalance = _first(events, "generation id")
        if rebalance is not None and _first(events, "Worker ready", rebalance) is not None:
            return
        if worker.process.poll() is not None:
            raise SystemExit(f"survivor exited with {worker.process.returncode}: see {worker.log}")
        time.sleep(0.2)
    raise SystemExit(f"survivor not ready {timeout:.0f} s after the kill: see {worker.log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=("cold", "standby"))
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000])
    parser.add_argument("--standby-replicas", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "clearance-restore", help="data dirs and worker logs"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "restore.jsonl")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for the workers")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    if "CLEARANCE_WEB_PORT" not in os.environ:
        base = base.with_overrides(web_port=6166)
    env = dict(item.split("=", 1) for item in args.env)
    args.work.mkdir(parents=True, exist_ok=True)
    for keys in args.keys:
        if args.case == "cold":
            results = [cold(base, args.work, keys, env)]
        else:
            results = [standby(base, args.work, keys, r, env) for r in args.standby_replicas]
        for result in results:
            line = orjson.dumps({"machine_time": datetime.now().isoformat(timespec="seconds"), **result})  # noqa: DTZ005
            print(line.decode(), flush=True)
            with args.results.open("ab") as handle:
                handle.write(line + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
