"""The tables' changelog records: one per key per ack batch, through the worker's producer.

Faust writes a changelog record for every table write, at once, through its own producer
(`Collection.send_changelog`). A join state is written up to four times while its order's
documents arrive, and the clock table on every tick. Here the record of each write is kept
until the delivery-gated ack batch that covers it is sealed (agents/acks.py); then the last
value of each key is produced, as the record caches of Kafka Streams and Quix Streams do.
Nothing is lost by the wait: the input that caused a write is acked only after its batch's
records are delivered, so a crash before that re-reads the input and writes again.

Faust's recovery still rebuilds every table from these topics: they are the tables' own
changelog topics, with the partition Faust chose (the current event's) and raw bytes.
Once a batch's records are delivered, the highest offset of each changelog partition is
recorded in the table's store (`faust_internals.write_changelog_through`), where Faust's own
callback records every record's, so a restart that keeps local RocksDB reads only what came
after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.producer import Delivered, Producer

log = logging.getLogger("clearance.worker")

Persist = Callable[[Delivered], None]


@dataclass(frozen=True, slots=True)
class _Where:
    partition: int


@dataclass(frozen=True, slots=True)
class Queued:
    """What a table reads of a changelog send: `Table.on_key_set` takes `.message.partition`
    (for its key expiry bookkeeping) from the FutureMessage Faust's own send returns."""

    message: _Where


class Changelog:
    """Pending changelog records of every table, last value per (topic, partition, key)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: dict[tuple[str, int, bytes], bytes | None] = {}
        self._persist: dict[str, Persist] = {}
        self.written = 0  # table writes seen
        self.produced = 0  # changelog records produced

    def table(self, topic: str, persist: Persist) -> Callable[..., Queued]:
        """A `send_changelog(partition, key, value, ...)` for one table's changelog `topic`."""
        self._persist[topic] = persist

        def send_changelog(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Queued:
            if partition is None or not isinstance(key, bytes):
                raise TypeError(f"changelog of {topic}: a raw bytes key and a partition are required")
            self._pending[topic, partition, key] = value if isinstance(value, bytes) or value is None else bytes(value)
            self.written += 1
            return Queued(_Where(partition))

        return send_changelog

    def __len__(self) -> int:
        return len(self._pending)

    def drain(self) -> list[asyncio.Future[Delivered]]:
        """Produce every pending record (last value per key); their delivery futures."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        send = self._producer.send
        futures = [send(topic, key, value, partition=partition) for (topic, partition, key), value in pending.items()]
        self.produced += len(futures)
        # One persisted offset per changelog partition per batch, once all of it is delivered
        # (Faust records one per record: a RocksDB write each, ~3% of the worker's profile).
        asyncio.gather(*futures, return_exceptions=True).add_done_callback(lambda _: self._persisted(futures))
        return futures

    def _persisted(self, futures: list[asyncio.Future[Delivered]]) -> None:
        """Record the highest delivered offset of each changelog partition of a batch (librdkafka
        delivers a partition's records in order; a failed record fails the batch's acks)."""
        highest: dict[tuple[str, int], int] = {}
        for future in futures:
            if future.cancelled() or future.exception() is not None:
                continue
            delivered = future.result()
            key = (delivered.topic, delivered.partition)
            if delivered.offset > highest.get(key, -1):
                highest[key] = delivered.offset
        for (topic, partition), offset in highest.items():
            try:
                self._persist[topic](Delivered(topic, partition, offset))
            except Exception as exc:  # noqa: BLE001 - only a restart's recovery reads more: never fatal
                log.debug("persisted offset of %s not recorded: %s", topic, type(exc).__name__)
