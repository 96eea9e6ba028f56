"""Candidates gathered per candidates partition (agents/batch.py): one record each, before every
watermark and at every seal of an ack batch, whose acks wait for them. Without a broker: a
recording produce and real Tallies (tests/integration/test_producer.py checks the partitions
against librdkafka's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from agents.acks import Delivery
from agents.batch import CandidateBatch
from agents.metrics import Metrics
from agents.sender import Emit, Headers, Sender
from pipeline.codec import CANDIDATES_PREFIX, WATERMARK_PREFIX, decode_watermarks, split_candidates
from pipeline.partitioner import partition_of
from tests.agents.test_producer import Report, counting

PARTITIONS = 12
TOPICS: dict[Any, str] = {"matched": "matched", "flagged": "flagged", "candidates": "candidates"}


def keys(n: int) -> list[bytes]:
    return [b"3301021990%08d" % i for i in range(n)]


def test_a_buyer_key_always_goes_to_one_partition_and_the_keys_spread_over_all() -> None:
    seen = [partition_of(key, PARTITIONS) for key in keys(600)]
    assert seen == [partition_of(key, PARTITIONS) for key in keys(600)]
    assert set(seen) == set(range(PARTITIONS))
    assert max(seen.count(p) for p in range(PARTITIONS)) < 100  # 50 each on average


def test_one_record_per_partition_with_its_candidates_in_order() -> None:
    produced: list[tuple[int, bytes]] = []
    batch = CandidateBatch(PARTITIONS, lambda partition, value: produced.append((partition, value)))
    added = [(key, b'["%s"]' % key) for key in keys(40)]
    for key, value in added:
        batch.add(key, value)
    assert len(batch) == 40 and produced == []
    assert batch.drain() == []  # no futures: the records count into the open batch's tally
    assert len(batch) == 0 and (batch.records, batch.candidates) == (len(produced), 40)
    assert len({partition for partition, _ in produced}) == len(produced), "one record per partition"
    for partition, value in produced:
        assert split_candidates(value) == [v for k, v in added if partition_of(k, PARTITIONS) == partition]
    batch.drain()
    assert batch.records == len(produced), "nothing waits: nothing produced"


def _sender(batch: CandidateBatch, sent: list[tuple[str, int, bytes]], delivery: Delivery) -> Sender:
    async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any] | None:
        raise AssertionError("no candidate is sent on its own")

    async def send_to(topic: str, partition: int, value: bytes) -> Awaitable[Any] | None:
        sent.append((topic, partition, value))
        return None

    return Sender(send, TOPICS, "deadletter", Metrics(), delivery, send_to=send_to, partitions=PARTITIONS, batch=batch)


def test_the_candidates_go_before_the_watermark_that_follows_them_on_every_partition() -> None:
    async def body() -> None:
        sent: list[tuple[str, int, bytes]] = []
        batch = CandidateBatch(PARTITIONS, lambda partition, value: sent.append(("candidates", partition, value)))
        sender = _sender(batch, sent, Delivery())
        for key in keys(30):
            await sender.emit(Emit("candidates", key, b'["%s"]' % key))
        assert sent == [] and len(batch) == 30
        await sender.watermarks([(5_000, 3, False)])
        firsts: dict[tuple[int, bool], int] = {}
        for i, (_, partition, value) in enumerate(sent):
            firsts.setdefault((partition, value.startswith(WATERMARK_PREFIX)), i)
            assert value.startswith((CANDIDATES_PREFIX, WATERMARK_PREFIX))
        candidate_partitions = {p for p, mark in firsts if not mark}
        assert candidate_partitions, "the 30 candidates went out"
        for partition in candidate_partitions:
            assert firsts[(partition, False)] < firsts[(partition, True)]
        assert sum(len(split_candidates(v)) for _, _, v in sent if v.startswith(CANDIDATES_PREFIX)) == 30
        assert [decode_watermarks(v) for _, _, v in sent if v.startswith(WATERMARK_PREFIX)] == [
            [(5_000, 3, False)]
        ] * PARTITIONS

    asyncio.run(body())


def test_an_ack_waits_for_the_candidates_its_batch_produced_at_the_seal() -> None:
    """The input that made a candidate is acked only once the record carrying it is delivered:
    the seal produces what waits into the batch's tally before sealing it."""

    async def body() -> None:
        tallies, counter = counting(asyncio.get_running_loop())
        delivery = Delivery(max_acks=1000, max_age_s=3600.0, counter=counter)
        counted: list[int] = []

        def produce(partition: int, value: bytes) -> None:
            delivery.tally.sent += 1  # what Producer.count does
            counted.append(partition)

        batch = CandidateBatch(PARTITIONS, produce)
        delivery.held.append(batch)
        sender = _sender(batch, [], delivery)
        await sender.emit(Emit("candidates", b"330102199000000001", b"[1]"))
        acked: list[int] = []
        await delivery.ack(lambda: acked.append(1))
        assert not delivery.settled(), "a candidate waits: not settled"
        flushing = asyncio.ensure_future(delivery.flush())
        for _ in range(20):
            await asyncio.sleep(0)
        assert counted == [partition_of(b"330102199000000001", PARTITIONS)] and acked == []
        (tally,) = tallies
        tally(None, Report("candidates", counted[0], 0))
        await flushing
        assert acked == [1] and delivery.settled()

    asyncio.run(body())
