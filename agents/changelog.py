"""The tables' changelog records and local writes: one per key per ack batch.

Faust writes a changelog record for every table write, at once, through its own producer
(`Collection.send_changelog`). A join state is written up to four times while its order's
documents arrive, and the clock table on every tick. Here the record of each write is kept
until the delivery-gated ack batch that covers it is sealed (agents/acks.py); then the last
value of each key is produced, as the record caches of Kafka Streams and Quix Streams do.
Nothing is lost by the wait: the input that caused a write is acked only after its batch's
records are delivered, so a crash before that re-reads the input and writes again.

The table's local RocksDB is written the same way (issue 12: "local RocksDB is written in
batches"): a write waits here, where the table's reads look first (`DirectTable`), and
each partition's waiting writes go to its database in one WriteBatch when the batch is
sealed, before its changelog records are produced, or sooner when something reads the
database itself (`write_local`: the scan that rebuilds the deadline index; a revocation
seals the batch). A put cost 3.6 us measured alone (its write-ahead log and memtable in
turn) and 4-4.5% of the worker's event loop; a WriteBatch entry 1.9 us, and a read of a
key written in the same batch none.

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

from rocksdict import WriteBatch

from agents.producer import Delivered, Producer, Tally

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


Database = Callable[[int], Any]  # a table's partition -> its RocksDB (rocksdict.Rdict, raw mode)
Key = tuple[str, int, bytes]  # (changelog topic, partition, key)
NOT_WAITING = object()  # `waiting`: the key has no write waiting


class LocalWriteError(RuntimeError):
    """Waiting writes could not be written to a table's local RocksDB."""


class Changelog:
    """Pending changelog records of every table, last value per (topic, partition, key), and
    the writes not yet in local RocksDB (`local`: tables given a database)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: dict[Key, bytes | None] = {}
        self._local: dict[Key, bytes | None] = {}  # written at the next seal or `write_local`
        self._persist: dict[str, Persist] = {}
        self._databases: dict[str, Database] = {}
        self._queued: dict[int, Queued] = {}
        self.written = 0  # table writes seen
        self.produced = 0  # changelog records produced
        self.local_batches = 0  # WriteBatches written to local RocksDB

    def table(self, topic: str, persist: Persist, database: Database | None = None) -> Callable[..., Queued]:
        """A `send_changelog(partition, key, value, ...)` for one table's changelog `topic`;
        with `database`, the write also waits here for its partition's local WriteBatch
        (the caller then writes nothing itself, and reads through `waiting`)."""
        self._persist[topic] = persist
        if database is not None:
            self._databases[topic] = database

        def send_changelog(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Queued:
            if partition is None or not isinstance(key, bytes):
                raise TypeError(f"changelog of {topic}: a raw bytes key and a partition are required")
            value = value if isinstance(value, bytes) or value is None else bytes(value)
            self._pending[topic, partition, key] = value
            if database is not None:
                self._local[topic, partition, key] = value
            self.written += 1
            queued = self._queued.get(partition)
            if queued is None:  # one per partition: they are all alike
                queued = self._queued[partition] = Queued(_Where(partition))
            return queued

        return send_changelog

    def waiting(self, topic: str, partition: int, key: bytes) -> object:
        """The value (None: deleted) a write left waiting for local RocksDB, else NOT_WAITING."""
        return self._local.get((topic, partition, key), NOT_WAITING)

    def write_local(self) -> None:
        """Write every waiting write to its partition's database, one WriteBatch each.

        LocalWriteError when a database refuses one (what it lists was not written; the
        rest was): the worker must then stop acking, as for a record not delivered."""
        if not self._local:
            return
        waiting, self._local = self._local, {}
        batches: dict[tuple[str, int], WriteBatch] = {}
        for (topic, partition, key), value in waiting.items():
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[topic, partition] = WriteBatch(raw_mode=True)
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        failed = []
        for (topic, partition), batch in batches.items():
            try:
                self._databases[topic](partition).write(batch)
                self.local_batches += 1
            except Exception as exc:  # noqa: BLE001 - reported together below
                failed.append(f"{topic}[{partition}] ({type(exc).__name__}: {exc})")
        if failed:
            raise LocalWriteError(f"local RocksDB not written: {', '.join(failed)}")

    def __len__(self) -> int:
        return len(self._pending)

    def drain(self) -> list[asyncio.Future[Tally]]:
        """Write the waiting writes to local RocksDB (`write_local`), then produce every pending
        record (last value per key), counted into one tally; its delivery future (none when
        nothing was pending). A database that refuses a write fails the batch (LocalWriteError
        from the future): its acks are not released, and the input is read again."""
        try:
            self.write_local()
        except LocalWriteError as exc:
            log.error("%s: no more acks; the input is read again", exc)
            # Not produced either: a changelog record whose local write is missing would be
            # recorded as persisted, and a restart that keeps local RocksDB would never read it.
            self._pending = {}
            failed: asyncio.Future[Tally] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return [failed]
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        tally = self._producer.tally(offsets=True)
        count = self._producer.count
        for (topic, partition, key), value in pending.items():
            count(tally, topic, key, value, None, partition)
        self.produced += len(pending)
        future = tally.seal()
        future.add_done_callback(self._persisted)
        return [future]

    def _persisted(self, future: asyncio.Future[Tally]) -> None:
        """Record the highest delivered offset of each changelog partition of a batch
        (librdkafka delivers a partition's records in order), once all of it is delivered:
        Faust records one per record, a RocksDB write each (~3% of the worker's profile).
        A batch not delivered whole records nothing (it fails its acks; a restart's
        recovery then reads from the last offset recorded)."""
        if future.cancelled() or future.exception() is not None:
            return
        for (topic, partition), offset in (future.result().highest or {}).items():
            try:
                self._persist[topic](Delivered(topic, partition, offset))
            except Exception as exc:  # noqa: BLE001 - only a restart's recovery reads more: never fatal
                log.debug("persisted offset of %s not recorded: %s", topic, type(exc).__name__)
