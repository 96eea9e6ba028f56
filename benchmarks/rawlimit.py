"""Case (a), the raw limit: a confluent-kafka consume-and-parse loop (orjson.loads of every message).

No state, no join, no output: what one Python process can pull out of the input
topics and decode. Every other case is reported as a ratio to this number.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from clearance.kafka import client_config
from clearance.settings import Settings


def consume_and_parse(settings: Settings, expected: int, *, timeout: float = 300.0) -> dict[str, Any]:
    """Read `expected` messages from the start of the input topics, parsing each; return the figures."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "queued.min.messages": 200_000,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t in settings.input_topics for p in range(settings.partitions)])
    count = invalid = size = 0
    first: float | None = None
    cpu_first = 0.0
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error() is not None:
                    continue
                if first is None:
                    first, cpu_first = time.perf_counter(), time.process_time()
                value = msg.value() or b""
                size += len(value)
                count += 1
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError:
                    invalid += 1
        seconds = time.perf_counter() - (first or time.perf_counter())
        cpu = time.process_time() - cpu_first if first is not None else 0.0  # librdkafka's threads included
    finally:
        consumer.close()
    return {
        "messages": count,
        "expected": expected,
        "invalid": invalid,
        "bytes": size,
        "seconds": round(seconds, 3),
        "eventsPerSecond": round(count / seconds, 1) if seconds > 0 else 0.0,
        "cpuSeconds": round(cpu, 2),
        "eventsPerCpuSecond": round(count / cpu, 1) if cpu > 0 else 0.0,
    }
