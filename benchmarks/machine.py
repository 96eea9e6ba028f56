"""The machine a benchmark ran on: CPUs, CPU model, RAM, Python, Kafka and client versions."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson

from ops.distribution import KAFKA_VERSION


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def describe() -> dict[str, Any]:
    """A JSON-able description of this machine and the software under test."""
    try:
        import faust

        faust_version = faust.__version__
    except ImportError:  # pragma: no cover - faust is a dependency
        faust_version = "absent"
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ramGB": _ram_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "librdkafka": confluent_kafka.libversion()[0],
        "confluentKafka": confluent_kafka.version()[0],
        "faust": faust_version,
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['nproc']} CPU ({machine['cpu']}), {machine['ramGB']} GB RAM, Python {machine['python']}, "
        f"Kafka {machine['kafka']}, librdkafka {machine['librdkafka']}, faust-streaming {machine['faust']}"
    )


def record(path: Path, machine: dict[str, Any], result: dict[str, Any]) -> None:
    """Print `result` as one JSON line and append it, with the machine and the time, to `path`."""
    print(orjson.dumps(result).decode(), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(orjson.dumps({"machine": machine, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}) + b"\n")
