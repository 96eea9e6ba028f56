"""The stop deadline: a clean stop that does not finish in time ends the process anyway.

A worker stops cleanly on SIGTERM or SIGINT (its acks released and committed, the
clean-stop marker written). That stop talks to the broker, and with the broker gone it can
wait for minutes: aiokafka's consumer retries its fetches and its final commit, and Faust
gives each service a minute. A `clearance worker --processes N` child whose supervisor was
killed together with its broker stayed alive for hours that way, reconnecting to whatever
broker later listened on the same port.

So the first stop signal also arms a timer on a thread of its own (the event loop may be
the thing that is stuck). When it fires, the process logs one line and exits at once with
`EXIT_CODE`, without the marker: the next start rebuilds its tables from the changelogs and
reads again what was not committed (at least once, as after a kill -9).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("clearance.worker")

EXIT_CODE = 70  # EX_SOFTWARE: distinct from a clean stop (0) and from death by a signal (128 + N)


def _exit_now(code: int) -> None:  # pragma: no cover - replaced in the tests
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


@dataclass(eq=False)
class StopDeadline:
    """Armed once, by the first stop signal; `exit` runs if the process is still alive `seconds` later."""

    seconds: float
    exit: Callable[[int], None] = _exit_now
    _timer: threading.Timer | None = field(default=None, init=False)

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, reason: str) -> None:
        """Start the countdown (a second call changes nothing: the first stop signal counts)."""
        if self._timer is not None:
            return
        log.info("%s: stopping; the stop may take %.0f s before the process exits anyway", reason, self.seconds)
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True  # a stop that finishes in time exits without waiting for it
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.error(
            "the clean stop did not finish in %.0f s (CLEARANCE_STOP_TIMEOUT_SECONDS): exiting now with code %d "
            "and no clean-stop marker; the next start rebuilds the tables and reads again what was not committed",
            self.seconds,
            EXIT_CODE,
        )
        self.exit(EXIT_CODE)
