"""Delivery-gated acks: a message is acked (committable) only after everything it caused was delivered.

Faust commits the acked offsets after `producer.flush()`, but its ProducerBuffer
(where every table write's changelog message waits) gives up flushing after
0.1 s without a send completing (`flush_atmost` returns on its first timeout):
under load an input offset can be committed while the changelog record of its
state is still in memory. A kill -9 then loses documents (measured: 23 of 5,000
orders in the crash test). So the agents ack nothing themselves: every output
send and every changelog send is tracked here, and acks are released in batches,
after all tracked futures resolved. A failed send keeps its acks back (the
messages are read again after a restart) and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("clearance.worker")

Ack = Callable[[], object]


class Delivery:
    """Futures of sends in flight and the acks waiting for them."""

    def __init__(self, max_acks: int = 2000, max_age_s: float = 0.2) -> None:
        self.max_acks = max_acks
        self.max_age_s = max_age_s
        self._futures: list[Awaitable[Any]] = []
        self._acks: list[Ack] = []
        self._oldest = 0.0
        self.broken = False  # a send failed: ack nothing any more (Faust could commit past the gap)

    def track(self, future: Awaitable[Any]) -> None:
        self._futures.append(future)

    async def ack(self, ack: Ack) -> None:
        """Ack once every send tracked so far is delivered (in a later batch)."""
        if not self._acks:
            self._oldest = time.monotonic()
        self._acks.append(ack)
        if len(self._acks) >= self.max_acks or time.monotonic() - self._oldest > self.max_age_s:
            await self.flush()

    async def flush(self) -> None:
        """Wait for the tracked sends, then release the acks taken before them, in order."""
        futures, acks = self._futures, self._acks
        self._futures, self._acks = [], []
        if not acks and not futures:
            return
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not self.broken:
            self.broken = True
            log.error(
                "%d sends failed (%s): no more acks; /healthz fails so the worker is restarted and "
                "reads the unacked messages again",
                len(errors),
                type(errors[0]).__name__,
            )
        if self.broken:
            return
        for ack in acks:
            ack()
