"""A small progress bar on stderr (no dependency): redraws at most a few times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(done)` with a running count of `total`; silent when disabled."""

    def __init__(self, total: int, label: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        fraction = min(done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction:6.1%} {done:,}/{self.total:,} {rate:,.0f}/s ")
        self.stream.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            self.update(done, force=True)
            self.stream.write("\n")
            self.stream.flush()
