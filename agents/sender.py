"""The agents' edge to Kafka: an input message as a plain value, and the one sender.

The processors (agents/join.py, agents/quota.py) see only `Msg`, a `Table` (a mutable
mapping of bytes) and a `Sender`, so their logic does not depend on Faust types.
Every output goes through `Sender`: declarations (matched/flagged by status),
candidates (repartitioned by buyer), dead letters (JSON record + dlq.* headers).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from agents.acks import Delivery
from agents.batch import CandidateBatch
from agents.metrics import Metrics
from clearance.clock import wall_ms
from pipeline.codec import dead_letter_dict, encode_watermarks

log = logging.getLogger("clearance.worker")

Headers = list[tuple[str, bytes]]
# A send's delivery future, or None when the send was counted into the open batch's tally
# (`Delivery.tally`, agents/producer.Tally) rather than tracked by a future of its own.
SendFn = Callable[[str, bytes | None, bytes, Headers | None], Awaitable[Awaitable[Any] | None]]
SendToFn = Callable[[str, int, bytes], Awaitable[Awaitable[Any] | None]]


class Msg(NamedTuple):
    """One consumed message (a NamedTuple: the drain makes one per message, and
    `tuple.__new__` builds it in 0.1 us where a frozen dataclass took ~1 us)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None  # the record's Kafka timestamp: a declaration's receivedAt


Dest = Literal["matched", "flagged", "candidates"]


class Emit(NamedTuple):
    """One message to publish: destination, Kafka key and value (bytes), and a declaration's
    status (for the declarations_out metric; "" for a candidate) and its decidedAt and
    receivedAt in ms (for the receipt-to-decision histogram; None when unknown or a re-send).
    A NamedTuple, as Msg: one or two per decided order."""

    dest: Dest
    key: bytes
    value: bytes
    status: str = ""
    decided_ms: int | None = None
    received_ms: int | None = None


class Table(Protocol):
    """The part of a Faust table the processors use (raw bytes keys and values)."""

    def get(self, key: bytes, /) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...
    def __delitem__(self, key: bytes, /) -> None: ...


class Sender:
    """Publishes outputs through one send function: (topic, key, value, headers) -> delivery
    future, or None when the send counted itself into `delivery.tally`."""

    def __init__(
        self,
        send: SendFn,
        topics: dict[Dest, str],
        deadletter_topic: str,
        metrics: Metrics,
        delivery: Delivery,
        *,
        send_to: SendToFn | None = None,
        partitions: int = 0,
        batch: CandidateBatch | None = None,
    ) -> None:
        """`send_to(topic, partition, value)` and `partitions` (of the candidates topic) publish
        watermarks; without them `watermark` does nothing. With `batch`, candidates wait in it
        (agents/batch.py) for the next watermark or the ack batch's seal, instead of a record
        each."""
        self._send = send
        self.batch = batch
        self._send_to = send_to
        self._partitions = partitions
        self.delivery = delivery
        self._topics = topics
        self._deadletter = deadletter_topic
        self.metrics = metrics

    async def emit(self, emit: Emit) -> None:
        if emit.dest == "candidates" and self.batch is not None:
            self.batch.add(emit.key, emit.value)
            return
        await self._publish(self._topics[emit.dest], emit.key, emit.value, None)
        if emit.dest != "candidates":
            self.metrics.inc("declarations_out", emit.status)
            if emit.decided_ms is not None:
                self.metrics.observe_receipt(emit.decided_ms, emit.received_ms)

    async def watermarks(self, marks: list[tuple[int, int, bool]]) -> None:
        """Publish the event times of join partitions, (event_ms, source, idle) each (idle: it
        holds no one back), in one record on every candidates partition."""
        if self._send_to is None or not marks:
            return
        if self.batch is not None:
            self.batch.drain()  # the candidates emitted before go first, on every partition
        topic, value = self._topics["candidates"], encode_watermarks(marks)
        for partition in range(self._partitions):
            try:
                future = await self._send_to(topic, partition, value)
            except Exception as exc:
                self.delivery.fail(f"a send to {topic} raised {type(exc).__name__}")
                raise
            if future is not None:
                self.delivery.track(future)

    async def dead_letter(self, msg: Msg, reason: str, field: str | None, internal: bool) -> None:
        record = dead_letter_dict(msg.value, msg, reason, field, internal=internal, wall_ms=wall_ms())
        headers: Headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.topic", msg.topic.encode()),
            ("dlq.partition", str(msg.partition).encode()),
            ("dlq.offset", str(msg.offset).encode()),
        ]
        await self._publish(self._deadletter, msg.key, orjson.dumps(record), headers)
        self.metrics.inc("dead_letters", record["error"])

    async def _publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> None:
        """Send and track the delivery. A send that raises instead of failing its future (a full
        buffer, a closed producer) would otherwise let the input be acked with nothing delivered:
        it breaks the delivery (no more acks, /healthz fails), then propagates."""
        try:
            future = await self._send(topic, key, value, headers)
        except Exception as exc:
            self.delivery.fail(f"a send to {topic} raised {type(exc).__name__}")
            raise
        if future is not None:
            self.delivery.track(future)

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
