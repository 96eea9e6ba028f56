"""docker-compose.yml parses, and runs the Kafka version the local broker pins."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ops.distribution import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) if present, else `docker-compose` (v1, Debian)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)  # noqa: S607
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` (plugin) nor `docker-compose` is installed: cannot validate")
    result = subprocess.run(  # noqa: S603
        [*command, "-f", str(COMPOSE), "--profile", "replay", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_pins_the_local_broker_version() -> None:
    images = re.findall(r"image:\s*apache/kafka:(\S+)", COMPOSE.read_text(encoding="utf-8"))
    assert images == [KAFKA_VERSION]
