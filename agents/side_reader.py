"""A plain consumer beside Faust's: committed offsets, log ends and short offset ranges.

Used by agents/sequence.py (holes) and by the join's merge (is anything unread?).
It never joins the consumer group (no subscribe, no commit): `committed` is an
OffsetFetch for the worker's group id, `log_end` a ListOffsets, `read` assigns one
partition at an offset and reads up to another. Calls block, so the agents run them in
a thread; one client, one call at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from agents.sender import Msg
from clearance.kafka import MAX_MESSAGE_BYTES, client_config
from clearance.settings import Settings

_TIMEOUT_S = 30.0
_LOG_END_TIMEOUT_S = 5.0


class SideReader:
    """Committed offsets and offset ranges of the worker's input topics."""

    def __init__(self, settings: Settings) -> None:
        self._config: dict[str, Any] = {
            **client_config(settings),
            "group.id": settings.app_id,  # for OffsetFetch only: this client never subscribes or commits
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,  # the default 500 ms made every read of a few messages take half a second
            "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
            # What Faust's consumer sees: uncommitted transactions only under exactly_once's read_committed.
            "isolation.level": "read_committed"
            if settings.processing_guarantee == "exactly_once"
            else "read_uncommitted",
        }
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    async def start_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return await asyncio.to_thread(self._start_offsets, tps)

    async def log_end(self, topic: str, partition: int) -> int:
        """The partition's high watermark as the broker has it now (not the consumer's last fetch)."""
        return await asyncio.to_thread(self._log_end, topic, partition)

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Msg]:
        return await asyncio.to_thread(self._read, topic, partition, start, end)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def _start_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The group's committed offset of each partition, or its log start when none is committed."""
        with self._lock:
            client = self._client()
            committed = client.committed([TopicPartition(t, p) for t, p in tps], timeout=_TIMEOUT_S)
            out: dict[tuple[str, int], int] = {}
            for tp in committed:
                if tp.error is not None:
                    raise KafkaException(tp.error)
                if tp.offset == OFFSET_INVALID or tp.offset < 0:
                    low, _high = client.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=_TIMEOUT_S
                    )
                    out[(tp.topic, tp.partition)] = low
                else:
                    out[(tp.topic, tp.partition)] = tp.offset
            return out

    def _log_end(self, topic: str, partition: int) -> int:
        with self._lock:
            _low, high = self._client().get_watermark_offsets(
                TopicPartition(topic, partition), timeout=_LOG_END_TIMEOUT_S, cached=False
            )
            return int(high)

    def _read(self, topic: str, partition: int, start: int, end: int) -> list[Msg]:
        """Messages of offsets [start, end) that exist (markers and deleted offsets have none)."""
        with self._lock:
            client = self._client()
            client.assign([TopicPartition(topic, partition, start)])
            out: list[Msg] = []
            deadline = time.monotonic() + _TIMEOUT_S
            try:
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{topic}[{partition}]: offsets {start}..{end - 1} not read in {_TIMEOUT_S} s"
                        )
                    message = client.poll(0.5)
                    if message is None:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            break
                        raise KafkaException(error)
                    offset = message.offset()
                    if offset is None or offset >= end:
                        break
                    value = message.value()
                    kind, stamp = message.timestamp()
                    timestamp_ms = stamp if kind != TIMESTAMP_NOT_AVAILABLE and stamp > 0 else None
                    body = value if isinstance(value, bytes) else b""
                    out.append(Msg(topic, partition, offset, message.key(), body, timestamp_ms))
            finally:
                client.unassign()
            return out
