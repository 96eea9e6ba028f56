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
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger("clearance.worker")

Ack = Callable[[], object]
Settling = asyncio.Task[None]  # one sealed batch being settled


class Pending(Protocol):
    """Records held back until a batch is sealed (the tables' changelog, agents/changelog.py;
    the candidates, agents/batch.py)."""

    def __len__(self) -> int: ...
    def drain(self) -> list[Any]: ...


class Counted(Protocol):
    """The sends of one batch counted rather than tracked one by one (agents/producer.Tally)."""

    sent: int

    @property
    def delivered(self) -> bool: ...
    def seal(self) -> Awaitable[Any]: ...


class Delivery:
    """Futures of sends in flight and the acks waiting for them.

    The agents never wait for a single send: `ack` only records the ack. Every
    `max_acks` acks (or `max_age_s`) the acks taken so far and the futures tracked
    so far are sealed into a batch, and a task settles it: it waits for the
    previous batch (so acks stay in order), then for the batch's futures, then
    acks. The agent goes on meanwhile; it waits only when `max_batches` batches
    are unsettled (back pressure)."""

    def __init__(
        self,
        max_acks: int = 2000,
        max_age_s: float = 0.2,
        max_batches: int = 4,
        held: Iterable[Pending] = (),
        counter: Callable[[], Counted] | None = None,
    ) -> None:
        """`held`: records produced only when a batch is sealed (more can be added to the
        list later); their futures join that batch, or they count into its tally.
        `counter`: makes the `tally` that the sends of each batch are counted into (the
        producer's), sealed with the batch."""
        self.max_acks = max_acks
        self.held: list[Pending] = list(held)
        self._counter = counter
        self._tally: Counted | None = None
        self.max_age_s = max_age_s
        self.max_batches = max_batches
        self._futures: list[Awaitable[Any]] = []
        self._acks: list[Ack] = []
        self._oldest = 0.0
        self._settling: deque[Settling] = deque()
        self._generation = 0  # bumped at every rebalance: acks taken before it are dropped
        self.broken = False  # a send failed: ack nothing any more (Faust could commit past the gap)

    def track(self, future: Awaitable[Any]) -> None:
        self._futures.append(future)

    @property
    def tally(self) -> Counted:
        """What a send of the open batch is counted into (instead of a tracked future each)."""
        tally = self._tally
        if tally is None:
            if self._counter is None:
                raise RuntimeError("Delivery has no counter: track each send's future")
            tally = self._tally = self._counter()
        return tally

    async def ack(self, ack: Ack) -> None:
        """Ack once every send tracked so far is delivered (in a later batch)."""
        if not self._acks:
            self._oldest = time.monotonic()
        self._acks.append(ack)
        if len(self._acks) >= self.max_acks or time.monotonic() - self._oldest > self.max_age_s:
            self._seal()
            while len(self._settling) > self.max_batches:
                await asyncio.wait((self._settling[0],))
                self._prune()

    async def checkpoint(self) -> None:
        """Seal what is tracked so far into a batch, as a full batch of acks would, and wait
        while too many are unsettled. For one input that causes many sends (a flush that
        forgets every retained order): its records then wait in bounded batches, not all
        at once with a future each."""
        self._seal()
        while len(self._settling) > self.max_batches:
            await asyncio.wait((self._settling[0],))
            self._prune()

    def fail(self, reason: str) -> None:
        """Stop all acks (nothing more is committed; /healthz fails so the worker is restarted)."""
        if not self.broken:
            log.error("%s: no more acks; /healthz fails so the worker is restarted and reads again", reason)
        self.broken = True

    def settled(self) -> bool:
        """No send failed and every tracked send is delivered (asked once the worker has stopped)."""
        if self.broken or any(not task.done() or task.cancelled() for task in self._settling):
            return False
        if any(len(held) for held in self.held):
            return False
        if self._tally is not None and not self._tally.delivered:
            return False
        return all(_delivered(future) for future in self._futures)

    def revoke(self) -> None:
        """A rebalance: drop every ack not released yet (their messages are read again).

        Faust forgets a revoked partition's acks and committed offset; an ack arriving
        after that is taken as if nothing was committed, so a late batch could commit
        offsets for a partition this worker no longer owns (or owns again from a
        different committed offset). The futures stay tracked: a failed send still
        breaks the worker."""
        self._acks = []
        self._generation += 1

    def release(self) -> None:
        """Seal what is pending into a batch, without waiting: its acks are released once its
        sends are delivered (`_settle`). For a quiet stream, whose acks no later one seals."""
        self._seal()

    async def flush(self) -> None:
        """Seal what is pending and wait until every batch so far is settled."""
        self._seal()
        if self._settling:
            await asyncio.wait(tuple(self._settling))
            self._prune()

    def _seal(self) -> None:
        for held in self.held:
            self._futures.extend(held.drain())
        tally, self._tally = self._tally, None
        if tally is not None and tally.sent:
            self._futures.append(tally.seal())
        futures, acks = self._futures, self._acks
        self._futures, self._acks = [], []
        if not acks and not futures:
            return
        previous = self._settling[-1] if self._settling else None
        task = asyncio.ensure_future(self._settle(previous, futures, acks, self._generation))
        self._settling.append(task)
        self._prune()

    def _prune(self) -> None:
        while self._settling and self._settling[0].done():
            self._settling.popleft()

    async def _settle(
        self, previous: Settling | None, futures: list[Awaitable[Any]], acks: list[Ack], generation: int
    ) -> None:
        """Wait for the previous batch and this batch's sends, then release its acks in order."""
        if previous is not None:
            await asyncio.wait((previous,))
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
        if self.broken or generation != self._generation:
            return
        for ack in acks:
            try:
                ack()
            except Exception as exc:  # noqa: BLE001 - an ack that fails leaves a gap: commit nothing more
                self.fail(f"an ack raised {type(exc).__name__}")
                return


def _delivered(future: Awaitable[Any]) -> bool:
    if not isinstance(future, asyncio.Future):
        return False
    return future.done() and not future.cancelled() and future.exception() is None
