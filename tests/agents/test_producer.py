"""The producer's tally (agents/producer.Tally) and the acks that wait for it: no broker.

A tally is called with librdkafka's delivery reports in the producer's poll thread while
the event loop counts records in and seals it; these tests report from a real second
thread too, so a seal and a last report that pass each other by must still resolve the
batch (every test runs under a timeout: a batch that never resolves fails it).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

import agents.app
from agents.acks import Delivery
from agents.producer import ProduceError, Producer, Tally
from clearance.kafka import producer_config
from clearance.settings import Settings
from tests.agents.test_restore import Msg

# What a tally reads of a delivered message: (topic, partition, offset), as librdkafka's
# Message; the restore tests' stand-in has them.
Report = functools.partial(Msg, key=None, value=None)


def counting(loop: asyncio.AbstractEventLoop) -> tuple[list[Tally], Callable[[], Tally]]:
    """A Delivery's `counter` that keeps every Tally it makes, in order."""
    made: list[Tally] = []

    def counter() -> Tally:
        made.append(Tally(loop))
        return made[-1]

    return made, counter


def open_tally(delivery: Delivery) -> Tally:
    """The open batch's tally (the tests give Delivery a counter of Tallies)."""
    tally = delivery.tally
    assert isinstance(tally, Tally)
    return tally


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, timeout=20))


def test_a_tally_resolves_once_every_record_counted_in_is_reported_after_the_seal() -> None:
    async def body() -> None:
        tally = Tally(asyncio.get_running_loop(), offsets=True)
        tally.sent = 3
        tally(None, Report("t", 0, 7))
        future = tally.seal()
        assert not tally.delivered
        tally(None, Report("t", 1, 4))
        await asyncio.sleep(0)
        assert not future.done()  # one record still out
        tally(None, Report("t", 0, 5))  # librdkafka reports a partition in order; the highest is kept anyway
        assert await future is tally and tally.delivered
        assert tally.highest == {("t", 0): 7, ("t", 1): 4}

    run(body())


def test_a_tally_whose_records_were_all_reported_resolves_at_its_seal() -> None:
    async def body() -> None:
        tally = Tally(asyncio.get_running_loop())
        tally.sent = 2
        tally(None, Report("t", 0, 0))
        tally(None, Report("t", 0, 1))
        future = tally.seal()
        assert future.done() and future.result() is tally
        assert tally.highest is None  # offsets were not asked for
        assert tally.seal() is future  # sealed once

    run(body())


def test_one_record_not_delivered_fails_the_tally_naming_how_many_and_why() -> None:
    async def body() -> None:
        tally = Tally(asyncio.get_running_loop(), offsets=True)
        tally.sent = 3
        future = tally.seal()
        tally(None, Report("t", 0, 0))
        tally(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        tally(None, Report("t", 0, 1))
        with pytest.raises(ProduceError, match=r"1 of 3 record\(s\) not delivered: _MSG_TIMED_OUT"):
            await future
        assert not tally.delivered

    run(body())


@pytest.mark.parametrize("records", [1, 2, 50])
def test_seal_and_reports_from_the_poll_thread_never_miss_each_other(records: int) -> None:
    """2,000 tallies, each reported from another thread while the loop seals it at a random
    moment: every one resolves, with every offset."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        for round_ in range(2000):
            tally = Tally(loop, offsets=True)
            tally.sent = records
            go = threading.Event()

            def report(tally: Tally = tally, go: threading.Event = go) -> None:
                go.wait()
                for offset in range(records):
                    tally(None, Report("t", offset % 2, offset))

            thread = threading.Thread(target=report)
            thread.start()
            go.set()
            if round_ % 3 == 0:
                await asyncio.sleep(0)
            future = tally.seal()
            await future
            thread.join()
            assert tally.delivered and sum(1 for _ in (tally.highest or {})) == min(records, 2)

    run(body())


def test_acks_wait_for_the_sends_counted_into_their_batch() -> None:
    async def body() -> None:
        made, counter = counting(asyncio.get_running_loop())
        delivery = Delivery(max_acks=2, max_age_s=3600.0, counter=counter)
        acked: list[int] = []
        assert delivery.settled()
        first = open_tally(delivery)
        first.sent += 2  # what Producer.send does for each record it queues
        assert delivery.tally is first and not delivery.settled()
        await delivery.ack(lambda: acked.append(1))
        await delivery.ack(lambda: acked.append(2))  # seals the batch: the next send counts into a new tally
        second = open_tally(delivery)
        assert second is not first
        second.sent += 1
        await delivery.ack(lambda: acked.append(3))
        await delivery.ack(lambda: acked.append(4))
        second(None, Report("t", 0, 9))  # the later batch is delivered first
        for _ in range(20):
            await asyncio.sleep(0)
        assert acked == []  # acks stay in order: the first batch waits for its records
        first(None, Report("t", 0, 0))
        first(None, Report("t", 0, 1))
        await delivery.flush()
        assert acked == [1, 2, 3, 4] and delivery.settled()

    run(body())


def test_a_batch_with_an_undelivered_count_releases_no_ack_and_breaks_delivery() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        delivery = Delivery(max_acks=1000, max_age_s=3600.0, counter=lambda: Tally(loop))
        acked: list[int] = []
        tally = open_tally(delivery)
        tally.sent += 1
        await delivery.ack(lambda: acked.append(1))
        flushing = asyncio.ensure_future(delivery.flush())
        await asyncio.sleep(0)
        tally(KafkaError(KafkaError._MSG_TIMED_OUT), None)
        await flushing
        assert acked == [] and delivery.broken and not delivery.settled()

    run(body())


def test_a_delivery_without_a_counter_has_no_tally() -> None:
    with pytest.raises(RuntimeError, match="no counter"):
        _ = Delivery().tally


@pytest.mark.parametrize("linger_ms", [20, 0, 250])
def test_the_worker_producer_lingers_as_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linger_ms: int
) -> None:
    """CLEARANCE_PRODUCER_LINGER_MS reaches the librdkafka producer the worker makes (and only
    the worker's: the shared producer settings keep their 5 ms for the replay and the tools)."""
    made: list[dict[str, Any]] = []

    class Recording(Producer):
        def __init__(self, config: dict[str, Any]) -> None:
            made.append(config)
            super().__init__(config)

    monkeypatch.setattr(agents.app, "Producer", Recording)
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2, producer_linger_ms=linger_ms)
    agents.app.build(settings)
    assert [(config["linger.ms"], config["client.id"]) for config in made] == [(linger_ms, "clearance-worker")]
    assert producer_config(settings)["linger.ms"] == 5
