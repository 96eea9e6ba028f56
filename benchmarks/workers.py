"""Faust workers (`clearance worker`) as subprocesses, configured by environment variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

from clearance.clock import wall_ms
from clearance.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent


def worker_available() -> bool:
    return (ROOT / "agents" / "worker.py").exists() and (ROOT / "agents" / "app.py").exists()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings.from_env()` return `settings` (None and secrets left out)."""
    env: dict[str, str] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None or f.name == "sasl_password":
            continue
        env[env_name(f.name)] = str(value)
    return env


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    settings: Settings
    log: Path
    started_ms: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def ready(self, timeout: float = 90.0) -> bool:
        """Poll /readyz until it answers 200 (or the process exits)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.settings.web_port}/readyz"
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own localhost URL
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        return False

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker(settings: Settings, log: Path, *, profile: Path | None = None) -> Worker:
    """Start `clearance worker` with `settings` in its environment; output to `log`."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable]
    if profile is not None:
        # A .pyisession keeps every frame (render it later with `pyinstrument --load FILE --show-all`).
        renderer = "pyisession" if profile.suffix == ".pyisession" else "text"
        command += ["-m", "pyinstrument", "--outfile", str(profile), "--renderer", renderer]
    command += ["-m", "clearance.cli", "worker"]
    handle = log.open("wb")
    started = wall_ms()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)  # noqa: S603
    handle.close()
    return Worker(process, settings, log, started)
