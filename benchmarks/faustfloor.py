"""Case (f), Faust's floor: a bare Faust agent that reads the input topics, parses and acks each message.

No state, no join, no output, no web server: the same Faust (faust-streaming with its
aiokafka consumer) and the worker's consumer settings (commit interval, session
timeout, earliest offsets, raw serializers), one process, one agent over the three
input topics, `orjson.loads` of every value as case a does. Faust acks each message as
the agent's `async for` moves on. What Faust's own per-message input path costs on this
machine: case c is reported as a ratio to it (c/f).

Variants (`--variant`, for benchmarks/floors.py; case f is "plain"):
- "plain": Faust's defaults, `async for value in stream`;
- "take": the same, in batches through `stream.take_events(TAKE_MAX, TAKE_WITHIN)`, the
  batching the issue names for the agents (Faust acks each batch's events after it);
- "tuned": what the worker gives Faust (uvloop, `cython_optimizations`, the raw schema and
  the quiet monitor of agents/events.py, the consumer of agents/consumer.py that finishes in
  place a message callback that does not wait, the producer buffer of agents/buffer.py asked
  without a settings lookup), `async for event in stream.events()`;
- "tuned-direct": "tuned" iterating the stream itself and reading its `current_event`
  (`events()` is a Python async generator around that same iteration);
- "tuned-take": "tuned" in batches through `take_events`.

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

from agents import buffer, consumer
from agents.app import broker_credentials
from agents.events import QuietMonitor, RawSchema
from agents.worker import use_event_loop
from benchmarks.workers import ROOT, settings_env
from clearance.clock import wall_ms
from clearance.settings import Settings

VARIANTS = ("plain", "take", "tuned", "tuned-direct", "tuned-take")
TAKE_MAX = 500  # events per batch at most: as many as Faust's consumer takes per fetch loop (max_poll_records)
TAKE_WITHIN = 0.05  # seconds a part-filled batch waits


def floor_app(settings: Settings, expected: int, out: Path, variant: str = "plain") -> faust.App:
    tuned = variant.startswith("tuned")
    extra: dict[str, Any] = {"monitor": QuietMonitor(), "cython_optimizations": True} if tuned else {}
    app = faust.App(
        f"{settings.app_id}-floor-{uuid.uuid4().hex[:6]}",
        **extra,
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
    if tuned:
        consumer.use_in(app)
        buffer.use_in(app)
        topic = app.topic(*settings.input_topics, schema=RawSchema())
    else:
        topic = app.topic(*settings.input_topics, key_serializer="raw", value_serializer="raw")
    seen: dict[str, Any] = {"count": 0, "invalid": 0, "bytes": 0, "first": None, "firstWallMs": None, "firstCpu": 0.0}

    def read(value: bytes | None) -> None:
        if seen["first"] is None:
            seen["first"], seen["firstWallMs"] = time.perf_counter(), wall_ms()
            seen["firstCpu"] = time.process_time()
        seen["count"] += 1
        seen["bytes"] += len(value or b"")
        try:
            orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            seen["invalid"] += 1
        if seen["count"] == expected:
            seconds = time.perf_counter() - seen["first"]
            cpu = time.process_time() - seen["firstCpu"]
            figures = {
                "variant": variant,
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
            if "batches" in seen:  # the take variants: how full their batches were
                figures["batches"] = seen["batches"]
            out.write_bytes(orjson.dumps(figures))

    if variant.endswith("take"):

        @app.agent(topic)
        async def floor_batches(stream: Any) -> None:
            async for events in stream.take_events(TAKE_MAX, TAKE_WITHIN):
                seen["batches"] = seen.get("batches", 0) + 1
                for event in events:
                    read(event.value)

    elif variant == "tuned-direct":

        @app.agent(topic)
        async def floor_direct(stream: Any) -> None:
            async for _ in stream:  # the stream itself, without `events()`'s generator around it
                read(stream.current_event.value)

    elif tuned:

        @app.agent(topic)
        async def floor_events(stream: Any) -> None:
            async for event in stream.events():
                read(event.value)

    else:

        @app.agent(topic)
        async def floor(stream: Any) -> None:
            async for value in stream:
                read(value)

    return app


def faust_floor(
    settings: Settings, expected: int, work: Path, *, timeout: float = 600.0, variant: str = "plain"
) -> dict[str, Any]:
    """Run the floor agent as a subprocess until it has read `expected` messages; its figures."""
    work.mkdir(parents=True, exist_ok=True)
    out, log = work / "floor.json", work / "floor.log"
    env = {**os.environ, **settings_env(settings.with_overrides(data_dir=str(work / "data"))), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "benchmarks.faustfloor", "--expected", str(expected), "--out", str(out)]
    command += ["--variant", variant]
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
    parser.add_argument("--variant", choices=VARIANTS, default="plain", help="see the module's doc")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.variant.startswith("tuned"):
        use_event_loop("uvloop")  # before Faust's worker makes its loop, as agents/worker.py does
    app = floor_app(settings, args.expected, args.out, args.variant)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None  # as the worker: the spinner sets the root logger to DEBUG (agents/worker.py)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
