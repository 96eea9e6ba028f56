"""The worker's producer (agents/producer.py) against the real broker: records counted into a
tally are delivered before its future resolves, with the offsets the broker gave them; a
record the broker never takes fails the tally; a candidate's partition (agents/batch.py) is
librdkafka's for its buyer key."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Consumer, TopicPartition

from agents.producer import ProduceError, Producer
from clearance.kafka import client_config, producer_config
from clearance.settings import Settings
from pipeline.partitioner import partition_of


def test_a_sealed_tally_resolves_after_its_records_are_on_the_broker(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_matched
    partitions = kafka_settings.partitions

    async def body() -> dict[tuple[str, int], int]:
        producer = Producer(producer_config(kafka_settings))
        try:
            tally = producer.tally(offsets=True)
            for n in range(600):
                headers = [("n", str(n).encode())] if n % 2 else None
                producer.count(tally, topic, f"O{n}".encode(), b"{}", headers, n % partitions)
            assert tally.sent == 600
            done = await asyncio.wait_for(tally.seal(), timeout=30)
            assert done is tally and tally.delivered
            return dict(tally.highest or {})
        finally:
            producer.close()

    highest = asyncio.run(body())
    reader = Consumer({**client_config(kafka_settings), "group.id": f"{kafka_settings.app_id}-check"})
    try:
        ends = {
            (topic, p): reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - 1
            for p in range(partitions)
        }
    finally:
        reader.close()
    assert highest == ends  # every record landed where the tally says, and nothing else was written


def test_a_record_the_broker_never_takes_fails_its_tally(kafka_settings: Settings) -> None:
    async def body() -> None:
        producer = Producer({**producer_config(kafka_settings), "message.timeout.ms": 2000})
        try:
            tally = producer.tally()
            producer.count(tally, kafka_settings.topic_matched, b"O1", b"{}")
            producer.count(tally, f"{kafka_settings.topic_matched}.missing", b"O2", b"{}")  # never created
            with pytest.raises(ProduceError, match=r"1 of 2 record\(s\) not delivered"):
                await asyncio.wait_for(tally.seal(), timeout=30)
            assert not tally.delivered
        finally:
            producer.close(timeout_s=5)

    asyncio.run(body())


def test_a_candidate_goes_to_the_partition_its_buyer_key_would_go_to_as_a_key(kafka_settings: Settings) -> None:
    """agents/batch.py computes the partition of a buyer's candidates itself (one record per
    partition); the quota states already in a partition came there keyed, through librdkafka's
    partitioner (`murmur2_random`, clearance/kafka.py). The two agree, key by key."""
    topic = kafka_settings.topic_matched
    partitions = kafka_settings.partitions
    buyer_keys = [b"3301021990%08d" % n for n in range(300)] + [b"11010519491231002X", b"x", b"ab", b"abc"]

    async def body() -> list[int]:
        producer = Producer(producer_config(kafka_settings))
        try:
            futures = [producer.send(topic, key, b"{}") for key in buyer_keys]
            return [d.partition for d in await asyncio.wait_for(asyncio.gather(*futures), timeout=30)]
        finally:
            producer.close()

    landed = asyncio.run(body())
    assert len(set(landed)) == partitions
    assert [partition_of(key, partitions) for key in buyer_keys] == landed
