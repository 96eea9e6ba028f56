"""The broker, the topics and both Kafka clients, against a real Apache Kafka."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agents.side_reader import SideReader
from clearance.kafka import admin_config, client_config, producer_config
from clearance.settings import Settings
from clearance.topics import TopicLayoutError, ensure_topics, topic_specs

pytestmark = pytest.mark.integration


def _consume(settings: Settings, topic: str, count: int, timeout: float = 30.0) -> list[Message]:
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                got.append(message)
        return got
    finally:
        consumer.close()


def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """Produce with the project's config; return each key's partition from the delivery reports."""
    producer = Producer(producer_config(settings))
    partitions: dict[bytes, int] = {}

    def delivered(err: object, message: Message) -> None:
        assert err is None, err
        key = message.key()
        partition = message.partition()
        assert key is not None and partition is not None
        partitions[key] = partition

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return partitions


def test_confluent_round_trip(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_orders
    _produce(kafka_settings, topic, [(b"ORDER-1", b'{"orderNo":"ORDER-1"}')])
    [message] = _consume(kafka_settings, topic, 1)
    assert (message.key(), message.value()) == (b"ORDER-1", b'{"orderNo":"ORDER-1"}')


@pytest.mark.parametrize(("topic_field", "size"), [("topic_orders", 10_000_000), ("topic_deadletter", 14_000_000)])
def test_large_messages_fit(kafka_settings: Settings, topic_field: str, size: int) -> None:
    """A 10 MB input, and its base64 dead letter (~13.4 MB), pass the broker and topic limits."""
    topic = getattr(kafka_settings, topic_field)
    value = os.urandom(size)
    _produce(kafka_settings, topic, [(b"BIG", value)])
    [message] = _consume(kafka_settings, topic, 1)
    assert message.value() == value


def test_aiokafka_round_trip(kafka_settings: Settings) -> None:
    async def round_trip() -> tuple[bytes | None, bytes | None]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(kafka_settings.topic_payments, b'{"orderNo":"ORDER-2"}', key=b"ORDER-2")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            kafka_settings.topic_payments,
            bootstrap_servers=kafka_settings.bootstrap,
            group_id=f"test-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        return message.key, message.value

    assert asyncio.run(round_trip()) == (b"ORDER-2", b'{"orderNo":"ORDER-2"}')


def test_confluent_and_aiokafka_partition_keys_alike(kafka_settings: Settings) -> None:
    """The project's producer (murmur2_random) and aiokafka's default (Java murmur2) agree."""
    keys = [f"TMALL2026111100{n:06d}".encode() for n in range(300)] + ["订单-一".encode(), b"x"]
    by_confluent = _produce(kafka_settings, kafka_settings.topic_orders, [(k, b"{}") for k in keys])

    async def produce_with_aiokafka() -> dict[bytes, int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap)
        await producer.start()
        try:
            sent = {k: await producer.send(kafka_settings.topic_waybills, b"{}", key=k) for k in keys}
            return {k: (await future).partition for k, future in sent.items()}
        finally:
            await producer.stop()

    by_aiokafka = asyncio.run(produce_with_aiokafka())
    assert len(set(by_confluent.values())) == kafka_settings.partitions  # the keys do spread
    assert by_confluent == by_aiokafka


def test_ensure_topics_is_idempotent(kafka_settings: Settings) -> None:
    assert ensure_topics(kafka_settings) == []
    metadata = AdminClient(admin_config(kafka_settings)).list_topics(timeout=10)
    for spec in topic_specs(kafka_settings):
        assert len(metadata.topics[spec.name].partitions) == kafka_settings.partitions


def test_ensure_topics_refuses_another_partition_count(kafka_settings: Settings) -> None:
    with pytest.raises(TopicLayoutError, match="must all have 3 partitions"):
        ensure_topics(kafka_settings, partitions=3)


def test_topics_create_refuses_mismatched_inputs(kafka_settings: Settings) -> None:
    """A pre-existing payments topic with another partition count: the CLI exits 2 and says why."""
    suffix = uuid.uuid4().hex[:10]
    names = {f"CLEARANCE_{spec}": f"mismatch-{spec.lower()}.{suffix}" for spec in _TOPIC_SETTINGS}
    payments = names["CLEARANCE_TOPIC_PAYMENTS"]
    admin = AdminClient(admin_config(kafka_settings))
    admin.create_topics([NewTopic(payments, num_partitions=2, replication_factor=1)])[payments].result()
    deadline = time.monotonic() + 30
    while payments not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)  # creation is acknowledged before the broker's metadata shows the topic
    env = {**os.environ, **names, "KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "CLEARANCE_PARTITIONS": "4"}
    try:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "clearance.cli", "topics", "create"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert f"{payments} has 2" in result.stderr
        assert names["CLEARANCE_TOPIC_ORDERS"] not in admin.list_topics(timeout=10).topics  # refused before creating
    finally:
        for future in admin.delete_topics(list(names.values()), operation_timeout=30).values():
            future.exception()


_TOPIC_SETTINGS = [
    "TOPIC_ORDERS",
    "TOPIC_PAYMENTS",
    "TOPIC_WAYBILLS",
    "TOPIC_TICKS",
    "TOPIC_MATCHED",
    "TOPIC_FLAGGED",
    "TOPIC_DEADLETTER",
]


def test_side_reader_reads_ranges_and_committed_offsets(kafka_settings: Settings) -> None:
    """The worker's direct reader (agents/side_reader.py), which refills offsets the consumer skipped."""
    topic = kafka_settings.topic_orders
    producer = Producer(producer_config(kafka_settings))
    for i in range(10):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=1)
    assert producer.flush(30) == 0
    reader = SideReader(kafka_settings)
    try:
        # nothing committed yet: the log start
        assert asyncio.run(reader.start_offsets([(topic, 1), (topic, 2)])) == {(topic, 1): 0, (topic, 2): 0}
        got = asyncio.run(reader.read(topic, 1, 3, 7))
        assert [(m.offset, m.key, m.value) for m in got] == [(o, b"k%d" % o, b"v%d" % o) for o in range(3, 7)]
        assert all(m.topic == topic and m.partition == 1 for m in got)
        group = Consumer({**client_config(kafka_settings), "group.id": kafka_settings.app_id})
        group.commit(offsets=[TopicPartition(topic, 1, 5)], asynchronous=False)
        group.close()
        assert asyncio.run(reader.start_offsets([(topic, 1)])) == {(topic, 1): 5}
    finally:
        reader.close()
