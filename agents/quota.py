"""The quota stage on Kafka: candidates (keyed by buyer) and watermarks in, final declarations out.

State per buyer (pipeline.quota.BuyerQuota) lives in its own table, co-partitioned
with the repartition topic. The core remembers every declaration id with its
verdict, so a candidate delivered twice (at-least-once between the stages, or a
replay after a crash) yields the very same declaration and counts once. The
declaration is sent on every delivery, repeats included: that is what makes a
crash lose nothing here (the state may be ahead of the committed offset).

Order (docs/CONTRACT.md, "Annual quota"): a buyer's declarations are counted in
(eventTime, orderNo) order. Every join partition publishes its event time as a
watermark to every partition of the candidates topic (`{"watermark": ms, "source":
p}`, after the candidates it emitted before, on the same producer); a quota partition
decides a held candidate once the smallest watermark over all join partitions has
passed its eventTime (pipeline.quota.QuotaOrder), in (eventTime, orderNo) order. A
candidate below that watermark already (late, or a redelivery) is decided at once. A
join partition that is idle (no input for CLEARANCE_IDLE_SECONDS and none unread at the
broker) says so and is left out of the minimum until it has input again, as Flink's
idle sources are: its next document is late for the quota if others have moved on.

Held candidates are not acked: acks stay in offset order per topic partition, so a
crash, a rebalance or a scale-out re-reads them from the committed offset, and the
buyer's state (changelogged) keeps every verdict already given. Watermarks are not
stored: after an assignment every join partition publishes its own again within a
tick, and until then the stage holds (a pause, never a different verdict).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from agents.acks import Ack
from agents.outbox import emit_of
from agents.sender import Msg, Sender, Table
from pipeline.codec import WATERMARK_PREFIX, decode_candidate, decode_quota, decode_watermark, encode_quota
from pipeline.config import RulesConfig
from pipeline.errors import StateCodecError
from pipeline.join import Candidate
from pipeline.quota import QuotaOrder, apply_quota

log = logging.getLogger("clearance.worker.quota")

_ALL = 2**63  # a watermark past every eventTime


@dataclass(slots=True)
class _Pending:
    """A received message whose ack waits for its turn (offset order) and its decision."""

    ack: Ack
    done: bool = False


@dataclass(slots=True)
class _Partition:
    """One candidates partition: the sources' watermarks, the held candidates, the acks in order."""

    watermarks: dict[int, tuple[int, bool]] = field(default_factory=dict)  # source -> (event ms, idle)
    held: QuotaOrder[tuple[Msg, _Pending]] = field(default_factory=QuotaOrder)
    acks: deque[_Pending] = field(default_factory=deque)


class QuotaProcessor:
    """The quota agent's logic over the buyer table."""

    def __init__(self, config: RulesConfig, *, quotas: Table, sender: Sender, sources: int | None = None) -> None:
        """`sources`: the number of join partitions that publish watermarks; None decides
        every candidate on arrival (no ordering: for tests of the verdicts alone)."""
        self.config = config
        self.quotas = quotas
        self.sender = sender
        self.sources = sources
        self.partitions: dict[int, _Partition] = {}

    def forget_partitions(self) -> None:
        """A rebalance: held candidates are dropped unacked; whoever owns them now re-reads them."""
        self.partitions.clear()

    @property
    def held(self) -> int:
        return sum(len(p.held) for p in self.partitions.values())

    async def handle(self, msg: Msg, ack: Ack) -> None:
        """Process one candidate or watermark; ack it in offset order once decided. Never raises."""
        part = self.partitions.setdefault(msg.partition, _Partition())
        pending = _Pending(ack)
        part.acks.append(pending)
        try:
            if msg.value.startswith(WATERMARK_PREFIX):
                pending.done = True
                await self._watermark(part, msg)
            else:
                await self._receive(part, msg, pending)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            pending.done = True
            await self.sender.internal_error(msg, exc, "quota")
        await self._release(part)

    def watermark(self, part: _Partition) -> int:
        """The smallest event time over the join partitions that are not idle (-1 while one is
        unknown; everything when all are idle: nothing can come before new input)."""
        if self.sources is None:
            return _ALL
        marks = part.watermarks
        if len(marks) < self.sources:
            return -1
        return min((event_ms for event_ms, idle in marks.values() if not idle), default=_ALL)

    async def _watermark(self, part: _Partition, msg: Msg) -> None:
        try:
            event_ms, source, idle = decode_watermark(msg.value)
        except StateCodecError as err:
            await self.sender.dead_letter(msg, str(err), "watermark", True)
            return
        if self.sources is not None and 0 <= source < self.sources:
            before = part.watermarks.get(source, (-1, False))[0]
            part.watermarks[source] = (max(before, event_ms), idle)

    async def _receive(self, part: _Partition, msg: Msg, pending: _Pending) -> None:
        try:
            candidate = decode_candidate(msg.value)
        except StateCodecError as err:
            pending.done = True
            await self.sender.dead_letter(msg, str(err), None, True)
            return
        if candidate.declaration.event_time_ms < self.watermark(part):
            pending.done = True  # nothing earlier can still come: decide now
            await self._decide(candidate, msg)
        else:
            part.held.hold(candidate, (msg, pending))

    async def _release(self, part: _Partition) -> None:
        """Decide what the watermark has passed, in order; then ack the decided prefix."""
        for candidate, (msg, pending) in part.held.release(self.watermark(part)):
            pending.done = True
            try:
                await self._decide(candidate, msg)
            except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
                await self.sender.internal_error(msg, exc, "quota")
        acks = part.acks
        while acks and acks[0].done:
            await self.sender.delivery.ack(acks.popleft().ack)

    async def _decide(self, candidate: Candidate, msg: Msg) -> None:
        key = candidate.buyer_key.encode()
        raw = self.quotas.get(key)
        result = apply_quota(decode_quota(raw) if raw is not None else None, candidate, self.config)
        if result.changed:
            self.quotas[key] = encode_quota(result.state)
        await self.sender.emit(emit_of(result.declaration))
