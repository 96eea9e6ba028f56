"""The agents' one drain loop: every event of a Faust stream, in offset order, with our acks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from faust.types import EventT, StreamT

from agents.acks import Ack, Delivery
from agents.commits import Commits
from agents.sender import Msg
from agents.sequence import Sequencer

log = logging.getLogger("clearance.worker")

# Nothing in the per-message path waits for the network, so with a full stream buffer an agent
# could run long stretches without giving the event loop back; yield every few messages so the
# fetcher, the producer's sender, the ack-settling tasks and the other agent get their turn.
_YIELD_EVERY = 16
_new = tuple.__new__
_NONE: list[Msg] = []  # nothing to handle before a message (never appended to)

Handler = Callable[[Msg, Ack], Awaitable[None]]


async def drain(
    stream: StreamT[bytes],
    handle: Handler,
    sequencer: Sequencer,
    delivery: Delivery,
    commits: Commits,
    ack_refilled: Callable[[Msg], None] = lambda msg: None,
    tails: tuple[str, Callable[[Msg], Awaitable[list[Msg]]]] | None = None,
) -> None:
    """Hand every event to `handle` with its ack (acks are ours: delivery-gated, see
    agents/acks.py), in offset order without holes (see agents/sequence.py), giving the
    event loop back every few messages. Every released ack moves the committable offset
    (agents/commits.py). `tails` (topic, ask): a message of that topic (a tick) first has `ask`
    name what the consumer never delivered of its partition (Sequencer.stalled), handled before it."""
    event: EventT[bytes]
    tail_topic, ask = tails if tails is not None else ("", None)
    handled = 0
    in_turn = sequencer.in_turn
    async for event in stream.noack().events():  # type: ignore[attr-defined]  # StreamT omits noack
        msg = _msg(event)
        if in_turn(msg):  # the next offset of its partition, without a coroutine: the common case
            before, admit = _NONE, True
        else:
            try:
                before, admit = await sequencer.admit(msg)
            except Exception as exc:  # noqa: BLE001 - the check failed: go on, but commit nothing more
                delivery.fail(f"offset check of {msg.topic}[{msg.partition}]@{msg.offset} failed: {type(exc).__name__}")
                before, admit = _NONE, True
        if ask is not None and msg.topic == tail_topic:
            try:
                before = [*before, *await ask(msg)]
            except Exception:  # noqa: BLE001 - the next tick asks again; never stop the agent
                log.exception("%s[%d]: the check for undelivered tails failed", msg.topic, msg.partition)
        if before:  # read beside Faust: acked in Faust's books in their turn
            sequencer.handing_over = True  # the next offsets are past them already (Sequencer.handed)
            try:
                for missed in before:
                    await handle(missed, _Release(partial(ack_refilled, missed), missed, commits))
            finally:
                sequencer.handing_over = False
        if admit:
            await handle(msg, _Release(event.ack, msg, commits))
        handled += 1
        if handled % _YIELD_EVERY == 0:
            await asyncio.sleep(0)


class _Release:
    """`ack`, then the offset after `msg` is committable: unless a rebalance came since the
    message was received (`commits.generation` moved), when it does nothing.

    An ack released after a rebalance for a message received before it let a later commit of
    the same partition pass that message: a flush tick that came while the partitions were
    being revoked was held, dropped with its partition, and then acked as the tick ended (its
    partition was no longer the join's, so nothing held it), and the worker that got the
    partition back committed past it and never applied it (4 declarations lost in a
    two-process test). Whoever owns the partition after the rebalance reads that message again
    from the committed offset (agents/sequence.py reads it directly if Faust does not deliver it).

    One per message in flight (a backlog holds tens of thousands): a slotted object of
    64 bytes, where a closure over the four cost more (a function and a cell each)."""

    __slots__ = ("ack", "commits", "generation", "msg")

    def __init__(self, ack: Ack, msg: Msg, commits: Commits) -> None:
        self.ack, self.msg, self.commits, self.generation = ack, msg, commits, commits.generation

    def __call__(self) -> object:
        commits = self.commits
        if commits.generation != self.generation:
            return None  # taken before a rebalance: read again by the partition's owner
        result = self.ack()
        msg = self.msg
        commits.released(msg.topic, msg.partition, msg.offset)
        return result


def _msg(event: EventT[bytes]) -> Msg:
    m = event.message
    value = m.value if isinstance(m.value, bytes) else b""
    key = m.key if isinstance(m.key, bytes) or m.key is None else None
    stamp = m.timestamp  # seconds (a float) in Faust's messages
    timestamp_ms = round(stamp * 1000) if isinstance(stamp, int | float) and stamp > 0 else None
    return _new(Msg, (m.topic, m.partition, m.offset, key, value, timestamp_ms))
