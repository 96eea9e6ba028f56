"""Faust's floor (case f) and its variants count what they read the same way, batched or not.

Each variant's agent body runs over a stand-in stream (no broker: what is checked is the
counting that makes the figures, not Faust): every message is counted once, invalid JSON
is counted as invalid, the figures are written when the expected count is reached, and
the tuned variants are given what the worker gives Faust.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.events import QuietMonitor, RawSchema
from benchmarks.faustfloor import TAKE_MAX, VARIANTS, floor_app
from clearance.settings import Settings


class _Event:
    def __init__(self, value: bytes) -> None:
        self.value = value


class _Stream:
    """What the variants use of a Faust stream: values, `events()`, `current_event`, `take_events`."""

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self.current_event: _Event | None = None
        self.batches: list[int] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for value in self.values:
            self.current_event = _Event(value)
            yield value
            self.current_event = None

    async def events(self) -> AsyncIterator[_Event]:
        for value in self.values:
            yield _Event(value)

    async def take_events(self, max_: int, within: float) -> AsyncIterator[Sequence[_Event]]:
        for start in range(0, len(self.values), max_):
            batch = [_Event(v) for v in self.values[start : start + max_]]
            self.batches.append(len(batch))
            yield batch


def _values(count: int, invalid_every: int) -> list[bytes]:
    return [b"{not json" if i % invalid_every == 0 else orjson.dumps({"orderNo": f"O{i}"}) for i in range(count)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_counts_every_message_once(variant: str, tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    count = TAKE_MAX * 2 + 7  # two full batches and a part-filled one
    app = floor_app(Settings(data_dir=str(tmp_path)), count, out, variant)
    agents = list(app.agents.values())
    assert len(agents) == 1
    stream = _Stream(_values(count, invalid_every=10))
    asyncio.run(agents[0].fun(stream))
    figures: dict[str, Any] = orjson.loads(out.read_bytes())
    assert figures["variant"] == variant
    assert figures["messages"] == figures["expected"] == count
    assert figures["invalid"] == len(range(0, count, 10))
    assert figures["bytes"] == sum(len(v) for v in stream.values)
    if variant.endswith("take"):
        assert stream.batches == [TAKE_MAX, TAKE_MAX, 7]
        assert figures["batches"] == 3
    else:
        assert "batches" not in figures


def test_figures_wait_for_the_expected_count(tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    app = floor_app(Settings(data_dir=str(tmp_path)), 100, out, "take")
    asyncio.run(next(iter(app.agents.values())).fun(_Stream(_values(99, invalid_every=1000))))
    assert not out.exists(), "99 of 100 messages must not write the figures"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_tuned_variants_get_the_workers_settings(variant: str, tmp_path: Path) -> None:
    app = floor_app(Settings(data_dir=str(tmp_path)), 1, tmp_path / "floor.json", variant)
    tuned = variant.startswith("tuned")
    assert isinstance(app.monitor, QuietMonitor) is tuned
    assert bool(app.conf.cython_optimizations) is tuned
    channel = next(iter(app.agents.values())).channel
    assert isinstance(channel.schema, RawSchema) is tuned


@pytest.mark.parametrize("script", ["benchmarks.floors", "benchmarks.startup"])
def test_without_a_broker_the_scripts_say_so_in_one_line(script: str, tmp_path: Path) -> None:
    # Before, both waited in librdkafka's retries until they were killed.
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARANCE_", "KAFKA_"))}
    env |= {"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "CLEARANCE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", script, "--results", str(tmp_path / "out.jsonl")],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no Kafka broker reachable" in result.stderr and not (tmp_path / "out.jsonl").exists()
