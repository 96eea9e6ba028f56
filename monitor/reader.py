"""The result topics into a Tally: one confluent-kafka consumer on a thread.

The consumer assigns itself every partition of the matched, flagged and dead-letter topics
(no group membership, no commits: every start rebuilds the window from the topics, and
counting is idempotent by declarationId), starting at the first offset whose Kafka
timestamp is at or after `since_ms` (the broker's offsets-for-times), or at the beginning.
A topic this user may not read (the dead letters, for the `monitor` user of a secure
broker) is reported in `denied` and left out; the others are read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from clearance.kafka import client_config
from clearance.settings import Settings
from monitor.tally import Tally

log = logging.getLogger("clearance.monitor")


@dataclass
class Reading:
    """What the reader knows besides the tally: records read, topics denied, the last error."""

    records: int = 0
    denied: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    caught_up: bool = False


class Reader:
    """Feeds `tally` (under `lock`) from the result topics until `stop()`."""

    def __init__(self, settings: Settings, tally: Tally, lock: threading.Lock, since_ms: int | None) -> None:
        self.settings = settings
        self.tally = tally
        self.lock = lock
        self.since_ms = since_ms
        self.reading = Reading()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-reader", daemon=True)
        self._kinds = {
            settings.topic_matched: "declaration",
            settings.topic_flagged: "declaration",
            settings.topic_deadletter: "deadletter",
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                **client_config(self.settings),
                "group.id": self.settings.monitor_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.message.max.bytes": 40 * 1024 * 1024,
            }
        )

    def _run(self) -> None:
        try:
            consumer = self._consumer()
        except KafkaException as exc:
            self.reading.error = str(exc)
            return
        try:
            consumer.assign(self._start_offsets(consumer))
            while not self._stop.is_set():
                batch = consumer.consume(num_messages=2000, timeout=0.2)
                if not batch:
                    self.reading.caught_up = True
                    continue
                self._feed(batch)
        except Exception as exc:  # the page shows it; the server keeps answering
            log.exception("the monitor's reader stopped")
            self.reading.error = f"reader stopped: {type(exc).__name__}"
        finally:
            consumer.close()

    def _feed(self, batch: list[Any]) -> None:
        with self.lock:
            for msg in batch:
                error = msg.error()
                if error is not None:
                    self._on_error(msg.topic(), error)
                    continue
                value = msg.value() or b""
                if self._kinds.get(msg.topic()) == "deadletter":
                    self.tally.add_dead_letter(value)
                else:
                    kind, stamp = msg.timestamp()
                    self.tally.add_declaration(value, stamp if kind != TIMESTAMP_NOT_AVAILABLE else None)
                self.reading.records += 1

    def _on_error(self, topic: str | None, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED and topic:
            self.reading.denied[topic] = "not authorized to read"
            return
        self.reading.error = error.str()

    def _start_offsets(self, consumer: Consumer) -> list[TopicPartition]:
        """Every partition of the three topics, at the first offset of the window."""
        metadata = consumer.list_topics(timeout=15)
        wanted: list[TopicPartition] = []
        for topic in self._kinds:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                reason = "no such topic" if info is None else info.error.str()
                if info is not None and info.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    reason = "not authorized to read"
                self.reading.denied[topic] = reason
                log.warning("monitor: %s left out: %s", topic, reason)
                continue
            wanted += [TopicPartition(topic, p, self.since_ms or 0) for p in sorted(info.partitions)]
        if self.since_ms is None or not wanted:
            return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in wanted]
        found = consumer.offsets_for_times(wanted, timeout=15)
        # no record at or after the time: start at the end (nothing of the window there yet)
        return [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
