"""Case (f), Faust's floor: a bare Faust agent that reads the input topics, parses and acks each message.

No state, no join, no output, no web server: the same Faust (faust-streaming with its
aiokafka consumer) and the worker's consumer settings (commit interval, session
timeout, earliest offsets, raw serializers), one process, one agent over the three
input topics, `orjson.loads` of every value as case a does. Faust acks each message as
the agent's `async for` moves on. What Faust's own per-message input path costs on this
machine: case c is reported as a ratio to it (c/f).

Run as a subprocess (`python -m benchmarks.faustfloor --expected N --out FILE`, settings
from the environment); it writes its figures to FILE once N messages were read and keeps
running until it is stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import faust
import orjson

from agents.app import broker_credentials
from benchmarks.workers import ROOT, settings_env
from clearance.clock import wall_ms
from clearance.settings import Settings


def floor_app(settings: Settings, expected: int, out: Path) -> faust.App:
    app = faust.App(
        f"{settings.app_id}-floor-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        broker_commit_interval=settings.commit_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        broker_credentials=broker_credentials(settings),
    )
    topic = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    seen: dict[str, Any] = {"count": 0, "invalid": 0, "bytes": 0, "first": None, "firstWallMs": None, "firstCpu": 0.0}

    @app.agent(topic)
    async def floor(stream: Any) -> None:
        async for value in stream:
            if seen["first"] is None:
                seen["first"], seen["firstWallMs"] = time.perf_counter(), wall_ms()
                seen["firstCpu"] = time.process_time()
            seen["count"] += 1
            seen["bytes"] += len(value or b"")
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError:
                seen["invalid"] += 1
            if seen["count"] == expected:
                seconds = time.perf_counter() - seen["first"]
                cpu = time.process_time() - seen["firstCpu"]
                figures = {
                    "messages": seen["count"],
                    "expected": expected,
                    "invalid": seen["invalid"],
                    "bytes": seen["bytes"],
                    "seconds": round(seconds, 3),
                    "eventsPerSecond": round(seen["count"] / seconds, 1) if seconds > 0 else 0.0,
                    "cpuSeconds": round(cpu, 2),
                    "eventsPerCpuSecond": round(seen["count"] / cpu, 1) if cpu > 0 else 0.0,
                    "firstWallMs": seen["firstWallMs"],
                }
                out.write_bytes(orjson.dumps(figures))

    return app


def faust_floor(settings: Settings, expected: int, work: Path, *, timeout: float = 600.0) -> dict[str, Any]:
    """Run the floor agent as a subprocess until it has read `expected` messages; its figures."""
    work.mkdir(parents=True, exist_ok=True)
    out, log = work / "floor.json", work / "floor.log"
    env = {**os.environ, **settings_env(settings.with_overrides(data_dir=str(work / "data"))), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "benchmarks.faustfloor", "--expected", str(expected), "--out", str(out)]
    started = wall_ms()
    with log.open("wb") as handle:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        while not out.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not out.exists():
            raise RuntimeError(f"the Faust floor agent read fewer than {expected} messages; see {log}")
        figures: dict[str, Any] = orjson.loads(out.read_bytes())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    figures["startupSeconds"] = round((figures.pop("firstWallMs") - started) / 1000, 2)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faustfloor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--expected", type=int, required=True, help="messages to read before writing the figures")
    parser.add_argument("--out", type=Path, required=True, help="where the figures go (JSON)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    worker = faust.Worker(floor_app(settings, args.expected, args.out), loglevel="WARNING", quiet=True)
    worker.spinner = None  # as the worker: the spinner sets the root logger to DEBUG (agents/worker.py)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
