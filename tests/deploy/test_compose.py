"""docker-compose.yml parses, and runs the Kafka version the local broker pins.

The file is validated by Docker Compose itself (`config -q`): scripts/test.sh installs
Debian's docker-compose when neither it nor the `docker compose` plugin is there. Without
either the check is skipped on a workstation and fails under CI=true.
"""

from __future__ import annotations

import os
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


def _compose() -> list[str]:
    """The compose command, or skip (a workstation) / fail (CI=true) without one."""
    command = _compose_command()
    if command is None:
        reason = "neither `docker compose` (plugin) nor `docker-compose` is installed: cannot validate"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true; scripts/test.sh installs docker-compose as root with apt)")
        pytest.skip(reason)
    return command


def _config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [*_compose(), "-f", str(compose_file), "--profile", "replay", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=compose_file.parent,
    )


def test_compose_file_is_valid() -> None:
    result = _config(COMPOSE)
    assert result.returncode == 0, result.stderr


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: an unknown service key is an error, not a warning."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  worker:\n    image: x\n    bogus_key: 1\n", encoding="utf-8")
    result = _config(broken)
    assert result.returncode != 0
    assert "bogus_key" in result.stderr


def test_compose_pins_the_local_broker_version() -> None:
    images = re.findall(r"image:\s*apache/kafka:(\S+)", COMPOSE.read_text(encoding="utf-8"))
    assert images == [KAFKA_VERSION]


def test_secure_override_is_valid() -> None:
    """docker-compose.secure.yml laid over docker-compose.yml parses (it is not started here)."""
    secure = ROOT / "docker-compose.secure.yml"
    command = [*_compose(), "-f", str(COMPOSE), "-f", str(secure), "--profile", "replay", "config"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for needed in ("SASL_SSL", "KAFKA_SASL_PASSWORD_FILE", "/secrets/tls/ca.pem", "ops.secure"):
        assert needed in result.stdout, needed
