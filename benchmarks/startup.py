"""A worker's start: seconds from spawning `clearance worker` to its /readyz 200.

On the broker at KAFKA_BOOTSTRAP, each start on topics, a consumer group and a data
directory of its own (empty inputs: what is timed is the start itself, not a backlog):
spawn `clearance worker` with CLEARANCE_PROCESSES=N, poll /readyz every 20 ms, stop it with
SIGTERM, delete its topics. Every `--repo` runs from its own checkout with this
interpreter, so a worktree of older code can be alternated with this one, round by
round; the venv's compiled core is used wherever the checkout's pipeline/ matches it.

    python -m benchmarks.startup --processes 1 2 --rounds 3
    python -m benchmarks.startup --repo /tmp/before . --processes 2 --rounds 3

Prints one line per start and the median per repo and process count; appends one JSON
object per start to --results (benchmarks/results/startup.jsonl).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.processes import free_ports  # noqa: E402
from benchmarks.suite import delete_run_topics  # noqa: E402
from benchmarks.workers import settings_env  # noqa: E402
from clearance.kafka import KafkaUnavailable, probe  # noqa: E402
from clearance.settings import Settings  # noqa: E402
from clearance.topics import ensure_topics  # noqa: E402

POLL_SECONDS = 0.02


def own_settings(base: Settings, work: Path, port: int) -> Settings:
    """Topics, app id (the consumer group) and data directory of one start's own."""
    run = uuid.uuid4().hex[:8]
    topics = {f.name: f"{getattr(base, f.name)}.startup-{run}" for f in fields(base) if f.name.startswith("topic_")}
    return base.with_overrides(app_id=f"startup-{run}", data_dir=str(work / run), web_port=port, **topics)


def ready_seconds(port: int, process: subprocess.Popen[bytes], started: float, timeout: float) -> float | None:
    """Seconds from `started` until /readyz answers 200; None if the process exits or time runs out."""
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() - started < timeout and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own localhost URL
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_SECONDS)
    return None


def one_start(repo: Path, settings: Settings, log: Path, timeout: float) -> dict[str, Any]:
    ensure_topics(settings)
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    try:
        with log.open("wb") as out:
            started = time.monotonic()
            process = subprocess.Popen(  # noqa: S603 - this interpreter, the repo's own CLI
                [sys.executable, "-m", "clearance.cli", "worker"], cwd=repo, env=env, stdout=out, stderr=out
            )
            seconds = ready_seconds(settings.web_port, process, started, timeout)
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    finally:
        delete_run_topics([settings])
    return {"readySeconds": None if seconds is None else round(seconds, 3), "exitCode": code}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, nargs="+", default=[ROOT], help="checkouts to start from, in turn")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds a start may take")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "startup.jsonl")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clearance-startup")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    try:
        probe(base)  # one line and exit 1 without a broker, as every command does (not a retry loop)
    except KafkaUnavailable as exc:
        print(f"{Path(sys.argv[0]).stem}: {exc}", file=sys.stderr)
        return 1
    args.work.mkdir(parents=True, exist_ok=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    times: dict[tuple[str, int], list[float]] = {}
    failed = 0
    for round_no in range(1, args.rounds + 1):
        for repo in args.repo:
            for processes in args.processes:
                settings = own_settings(base, args.work, free_ports(1)[0]).with_overrides(processes=processes)
                log = args.work / f"{settings.app_id}.log"
                head = _head(repo)
                result = {
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "repo": str(repo.resolve()),
                    "commit": head,
                    "processes": processes,
                    "round": round_no,
                    **one_start(repo, settings, log, args.timeout),
                }
                with args.results.open("ab") as out:
                    out.write(orjson.dumps(result) + b"\n")
                seconds = result["readySeconds"]
                print(f"round {round_no} {head} processes={processes}: ready {seconds} s (log {log})", flush=True)
                if seconds is None:
                    failed += 1
                else:
                    times.setdefault((head, processes), []).append(seconds)
    for (head, processes), values in times.items():
        print(f"{head} processes={processes}: median {statistics.median(values):.2f} s of {len(values)}")
    return 1 if failed else 0


def _head(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)  # noqa: S607
    return out.stdout.strip() or str(repo)


if __name__ == "__main__":
    sys.exit(main())
