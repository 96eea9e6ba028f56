"""The wall clock, in one place: every shell reads it here and passes it into the core."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Milliseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000_000
