"""The tables' changelog records: last value per key per ack batch (agents/changelog.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from agents.acks import Delivery
from agents.changelog import Changelog
from agents.producer import Delivered, ProduceError, Tally
from tests.agents.test_producer import Report


class StandIn:
    """What Changelog uses of the producer: records counted into a real tally (or a future
    each), reported in `deliver` with offsets counting every record sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int]] = []
        self.reports: list[Tally | asyncio.Future[Delivered]] = []
        self.reported = 0

    def tally(self, *, offsets: bool = False) -> Tally:
        return Tally(asyncio.get_running_loop(), offsets=offsets)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None, partition: int = -1
    ) -> asyncio.Future[Delivered]:
        self.sent.append((topic, key, value, partition))
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        self.reports.append(future)
        return future

    def count(
        self, tally: Tally, topic: str, key: bytes | None, value: bytes | None, headers: Any = None, partition: int = -1
    ) -> None:
        self.sent.append((topic, key, value, partition))
        tally.sent += 1
        self.reports.append(tally)

    def deliver(self, fail: bool = False) -> None:
        for offset in range(self.reported, len(self.sent)):
            topic, _, _, partition = self.sent[offset]
            report = self.reports[offset]
            if isinstance(report, Tally):
                report(KafkaError(KafkaError._MSG_TIMED_OUT) if fail else None, Report(topic, partition, offset))
            elif fail:
                report.set_exception(ProduceError("MSG_TIMED_OUT"))
            else:
                report.set_result(Delivered(topic, partition, offset))
        self.reported = len(self.sent)


def test_one_record_per_key_per_batch_last_value_wins() -> None:
    async def scenario() -> None:
        producer = StandIn()
        changelog = Changelog(producer)  # type: ignore[arg-type]  # the stand-in has what it uses
        persisted: list[Delivered] = []
        send = changelog.table("app-join-changelog", persisted.append)
        for value in (b"order", b"order+payment", b"order+payment+waybill"):
            queued = send(3, b"O1", value)
            assert queued.message.partition == 3  # what Faust's Table.on_key_set reads
        send(3, b"O2", b"order")
        send(4, b"O1", b"other partition")
        send(3, b"O2", None)  # a delete: a tombstone
        assert len(changelog) == 3 and producer.sent == []  # nothing produced before the batch is sealed
        futures = changelog.drain()
        assert sorted(producer.sent) == [
            ("app-join-changelog", b"O1", b"order+payment+waybill", 3),
            ("app-join-changelog", b"O1", b"other partition", 4),
            ("app-join-changelog", b"O2", None, 3),
        ]
        assert (changelog.written, changelog.produced, len(changelog)) == (6, 3, 0)
        producer.deliver()
        await asyncio.gather(*futures)
        await asyncio.sleep(0)  # the batch's own callback
        # the highest delivered offset of each changelog partition, once per batch, for the table's recovery
        # (the stand-in's offsets count every record it was sent: 0 and 1 went to partition 3, 2 to 4)
        assert set(persisted) == {Delivered("app-join-changelog", 3, 1), Delivered("app-join-changelog", 4, 2)}
        assert changelog.drain() == []

    asyncio.run(scenario())


def test_the_batch_waits_for_the_changelog_records_it_seals() -> None:
    """An ack is released only after the changelog records written before it are delivered."""

    async def scenario() -> None:
        producer = StandIn()
        changelog = Changelog(producer)  # type: ignore[arg-type]
        delivery = Delivery(max_acks=1000, held=[changelog])
        acked: list[int] = []
        send = changelog.table("app-join-changelog", lambda d: None)
        send(0, b"O1", b"state")
        await delivery.ack(lambda: acked.append(1))
        assert not delivery.settled()  # a record held back is not delivered
        flushing = asyncio.ensure_future(delivery.flush())
        await asyncio.sleep(0)
        assert producer.sent and acked == []
        producer.deliver()
        await flushing
        assert acked == [1] and delivery.settled()

    asyncio.run(scenario())


def test_a_changelog_record_not_delivered_releases_no_ack() -> None:
    async def scenario() -> None:
        producer = StandIn()
        changelog = Changelog(producer)  # type: ignore[arg-type]
        delivery = Delivery(max_acks=1000, held=[changelog])
        acked: list[int] = []
        changelog.table("app-clock-changelog", lambda d: None)(1, b"1", b"[5]")
        await delivery.ack(lambda: acked.append(1))
        flushing = asyncio.ensure_future(delivery.flush())
        await asyncio.sleep(0)
        producer.deliver(fail=True)
        await flushing
        assert acked == [] and delivery.broken and not delivery.settled()

    asyncio.run(scenario())


def test_a_write_outside_a_partition_is_refused() -> None:
    changelog = Changelog(StandIn())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        changelog.table("t", lambda d: None)(None, b"k", b"v")
