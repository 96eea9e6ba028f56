"""The replay's producer side: its topics checked, each message with its timestamp, the flush.

A replay produces with the project's confluent-kafka config (clearance.kafka); the topics
must exist (no auto-creation: a broker would create one with its default partition count
and break co-partitioning), be writable and share one partition count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from clearance.kafka import denied
from clearance.settings import Settings
from clearance.traces import TraceError


class ReplayError(TraceError):
    """The trace cannot be produced: a one-line message for the user."""


def partition_count(producer: Producer, topic: str, settings: Settings) -> int:
    """The topic's partition count; ReplayError if it does not exist (no auto-creation: a
    broker would create it with its default count and break co-partitioning) or is denied."""
    metadata = producer.list_topics(topic, timeout=30).topics.get(topic)
    if metadata is not None and metadata.error is not None and metadata.error.code() in _DENIED:
        raise ReplayError(denied(topic, "write to", settings))
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ReplayError(f"topic {topic} does not exist: run `clearance topics create` first")
    return len(metadata.partitions)


_DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def check_topics(producer: Producer, settings: Settings) -> None:
    """Refuse to replay into missing input topics or input topics of different partition counts."""
    topics = (*settings.input_topics, settings.topic_ticks)
    counts = {topic: partition_count(producer, topic, settings) for topic in topics}
    if len(set(counts.values())) != 1:
        raise ReplayError(f"input topics are not co-partitioned: {counts}; see `clearance topics create`")


def produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    now_ms: int,
    partition: int | None = None,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
) -> None:
    """Produce one message with the timestamp `now_ms`, waiting while the local queue is full."""
    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    if on_delivery is not None:
        extra["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value=value, key=key, timestamp=now_ms, **extra)
            return
        except BufferError:
            producer.poll(0.05)  # the local queue is full: let deliveries drain


def flush(producer: Producer) -> None:
    """Wait for every delivery (ReplayError after 120 s)."""
    remaining = producer.flush(120)
    if remaining:
        raise ReplayError(f"{remaining} messages still undelivered after 120 s")
