"""Fast restore: the tables' changelogs read into local RocksDB before Faust's recovery (issue 13).

Faust's recovery reads the changelog records through its own consumer and hands them one
event at a time to its recovery task, which checks, buffers and writes each (3,800 to 8,100
records/s on the benchmark machine whatever its settings, benchmarks/RESULTS.md "Restore and
standbys"). A worker restarted after kill -9 starts from empty tables, so its time to ready
grew with the number of keys: 320 s for 1,200,000 records (9 s with this).

Here, after Faust has built the high watermarks of the active changelog partitions and
before it builds its start offsets (`faust_internals.before_active_recovery`), every such
partition is read with a librdkafka consumer from the offset after the local state's
(Faust's persisted offset) up to that high watermark, in a thread, and written into the
partition's RocksDB database in WriteBatches, each with Faust's persisted-offset key set
to the last offset in it, so a database and its offset always agree, whenever the process
dies. The offsets reached become the start of Faust's own recovery, which then reads
nothing, or only what it was not given time to (a rebalance in between stops the restore;
the time is bounded well inside Faust's `broker_request_timeout` for that step).

A record is written as Faust's `Store.apply_changelog_batch` writes it: the raw key and
value, a tombstone as a delete. Standby partitions are left to Faust: they are read after
the worker is ready and do not delay it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from rocksdict import WriteBatch

from clearance.kafka import MAX_MESSAGE_BYTES, client_config
from clearance.settings import Settings

log = logging.getLogger("clearance.worker")

_BATCH_MESSAGES = 20_000


@dataclass
class Part:
    """One active changelog partition to restore: offsets [start, end) into `db`."""

    topic: str
    partition: int
    start: int
    end: int  # the high watermark Faust built: one past the last record it would read
    db: Any  # the partition's rocksdict.Rdict (raw mode), opened by Faust's store
    offset_key: bytes  # where Faust's store keeps the partition's persisted offset


class RestoreError(RuntimeError):
    """The changelog could not be read."""


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": f"{settings.app_id}-restore",  # never subscribes or commits: assign only
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",  # a start below the log start (retention): from the first record kept
        "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
        # What Faust's recovery would see: aborted transactions only matter under exactly_once.
        "isolation.level": "read_committed" if settings.processing_guarantee == "exactly_once" else "read_uncommitted",
    }


def restore(
    settings: Settings, parts: list[Part], stop: threading.Event, budget_s: float
) -> dict[tuple[str, int], int]:
    """Write every record of `parts` into its database (blocking; run it in a thread).

    Returns the last offset written per partition (those with at least one record). Stops
    early, with every written batch consistent with its offset, when `stop` is set or after
    `budget_s`; Faust's recovery reads the rest."""
    every = {(p.topic, p.partition): p for p in parts if p.end > p.start}
    if not every:
        return {}
    todo = set(every)
    started = time.monotonic()
    consumer = Consumer(consumer_config(settings))
    reached: dict[tuple[str, int], int] = {}
    records = 0
    try:
        consumer.assign([TopicPartition(t, p, part.start) for (t, p), part in every.items()])
        while todo and not stop.is_set() and time.monotonic() - started < budget_s:
            records += _one_round(consumer, every, todo, reached)
    except Exception as exc:  # noqa: BLE001 - what was written stands; Faust's recovery reads the rest
        log.warning("fast restore stopped (%s: %s); Faust's recovery reads the rest", type(exc).__name__, exc)
    finally:
        consumer.close()
    seconds = time.monotonic() - started
    left = f"; {len(todo)} partitions left to Faust's recovery" if todo else ""
    log.info(
        "fast restore: %d records of %d changelog partitions in %.2f s (%.0f records/s)%s",
        records,
        len(every),
        seconds,
        records / seconds if seconds > 0 else 0.0,
        left,
    )
    return reached


def _one_round(
    consumer: Consumer,
    every: dict[tuple[str, int], Part],
    todo: set[tuple[str, int]],
    reached: dict[tuple[str, int], int],
) -> int:
    """Consume up to a batch of messages and write them, each partition's batch with its
    last offset; the number of records written (`reached` moves only once a batch is written)."""
    batches: dict[tuple[str, int], WriteBatch] = {}
    last: dict[tuple[str, int], int] = {}
    written = 0
    for msg in consumer.consume(_BATCH_MESSAGES, timeout=0.5):
        error = msg.error()
        tp = (msg.topic(), msg.partition())
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                todo.discard(tp)
                continue
            raise RestoreError(f"reading {tp[0]}[{tp[1]}]: {error}")
        offset = msg.offset()
        key = msg.key()
        if tp not in todo or offset is None or offset >= every[tp].end:
            todo.discard(tp)
            continue
        if offset >= every[tp].end - 1:
            todo.discard(tp)
        if key is None:
            continue
        batch = batches.get(tp)
        if batch is None:
            batch = batches[tp] = WriteBatch(raw_mode=True)
        value = msg.value()
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
        last[tp] = offset
        written += 1
    for tp, batch in batches.items():
        part = every[tp]
        batch.put(part.offset_key, str(last[tp]).encode())
        part.db.write(batch)
        reached[tp] = last[tp]
    return written
