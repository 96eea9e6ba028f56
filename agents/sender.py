"""The agents' edge to Kafka: an input message as a plain value, and the one sender.

The processors (join_agent, quota_agent) see only `Msg`, a `Table` (a mutable
mapping of bytes) and a `Sender`, so their logic does not depend on Faust types.
Every output goes through `Sender`: declarations (matched/flagged by status),
candidates (repartitioned by buyer), dead letters (JSON record + dlq.* headers).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from agents.acks import Delivery
from agents.metrics import Metrics
from agents.outbox import Dest, Emit
from clearance.clock import wall_ms
from pipeline.codec import dead_letter_dict, encode_candidate, encode_declaration
from pipeline.join import Candidate
from pipeline.records import Declaration

log = logging.getLogger("clearance.worker")

Headers = list[tuple[str, bytes]]
SendFn = Callable[[str, bytes | None, bytes, Headers | None], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True, slots=True)
class Msg:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Table(Protocol):
    """The part of a Faust table the processors use (raw bytes keys and values)."""

    def get(self, key: bytes, /) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...
    def __delitem__(self, key: bytes, /) -> None: ...


def emit_of(item: Declaration | Candidate) -> Emit:
    """The message an emitted core value becomes."""
    if isinstance(item, Candidate):
        return Emit("candidates", item.buyer_key.encode(), encode_candidate(item))
    dest: Dest = "matched" if item.matched else "flagged"
    return Emit(dest, item.order_no.encode(), encode_declaration(item), item.status)


class Sender:
    """Publishes outputs through one send function: (topic, key, value, headers) -> delivery future."""

    def __init__(
        self, send: SendFn, topics: dict[Dest, str], deadletter_topic: str, metrics: Metrics, delivery: Delivery
    ) -> None:
        self._send = send
        self.delivery = delivery
        self._topics = topics
        self._deadletter = deadletter_topic
        self.metrics = metrics

    async def emit(self, emit: Emit) -> None:
        self.delivery.track(await self._send(self._topics[emit.dest], emit.key, emit.value, None))
        if emit.dest != "candidates":
            self.metrics.inc("declarations_out", emit.status)

    async def dead_letter(self, msg: Msg, reason: str, field: str | None, internal: bool) -> None:
        record = dead_letter_dict(msg.value, msg, reason, field, internal=internal, wall_ms=wall_ms())
        headers: Headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.topic", msg.topic.encode()),
            ("dlq.partition", str(msg.partition).encode()),
            ("dlq.offset", str(msg.offset).encode()),
        ]
        self.delivery.track(await self._send(self._deadletter, msg.key, orjson.dumps(record), headers))
        self.metrics.inc("dead_letters", record["error"])

    async def internal_error(self, msg: Msg, exc: BaseException, where: str) -> None:
        """Log a bug without personal data (code locations only) and dead-letter the message."""
        self.metrics.inc("internal_errors")
        frames = "".join(traceback.format_tb(exc.__traceback__)[-4:])
        log.error(
            "internal error in %s at %s[%d]@%d: %s\n%s",
            where,
            msg.topic,
            msg.partition,
            msg.offset,
            type(exc).__name__,
            frames,
        )
        try:
            await self.dead_letter(msg, f"internal error: {type(exc).__name__}", None, True)
        except Exception as again:  # noqa: BLE001 - never let anything escape the agent
            log.error("could not dead-letter %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, type(again).__name__)
