"""The quota stage on Kafka: a candidate (keyed by buyer) in, the final declaration out.

State per buyer (pipeline.quota.BuyerQuota) lives in its own table, co-partitioned
with the repartition topic. The core remembers every declaration id with its
verdict, so a candidate delivered twice (at-least-once between the stages, or a
replay after a crash) yields the very same declaration and counts once. The
declaration is sent on every delivery, repeats included: that is what makes a
crash lose nothing here (the state may be ahead of the committed offset).
"""

from __future__ import annotations

from agents.acks import Ack
from agents.outbox import emit_of
from agents.sender import Msg, Sender, Table
from pipeline.codec import decode_candidate, decode_quota, encode_quota
from pipeline.config import RulesConfig
from pipeline.errors import StateCodecError
from pipeline.quota import apply_quota


class QuotaProcessor:
    """The quota agent's logic over the buyer table."""

    def __init__(self, config: RulesConfig, *, quotas: Table, sender: Sender) -> None:
        self.config = config
        self.quotas = quotas
        self.sender = sender

    async def handle(self, msg: Msg, ack: Ack) -> None:
        """Process one candidate; `ack` it once its outputs are delivered. Never raises."""
        try:
            await self._candidate(msg)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "quota")
        await self.sender.delivery.ack(ack)

    async def _candidate(self, msg: Msg) -> None:
        try:
            candidate = decode_candidate(msg.value)
        except StateCodecError as err:
            await self.sender.dead_letter(msg, str(err), None, True)
            return
        key = candidate.buyer_key.encode()
        raw = self.quotas.get(key)
        result = apply_quota(decode_quota(raw) if raw is not None else None, candidate, self.config)
        if result.changed:
            self.quotas[key] = encode_quota(result.state)
        await self.sender.emit(emit_of(result.declaration))
