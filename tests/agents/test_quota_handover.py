"""The quota stage's hand-over record (agents.quota, "Hand-over"): candidates decided and
delivered above a held one are not decided again by the next owner after a graceful
hand-over, and are after a kill -9. On fakes: one dict is the quota table of both owners
(the changelog brings a state to the next owner), a recording send, a real Delivery."""

from __future__ import annotations

import asyncio
import functools
import logging
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from agents.acks import Delivery
from agents.metrics import Metrics
from agents.quota import HandOver, QuotaProcessor, decode_handover, encode_handover, handover_key, write_handover
from agents.sender import Headers, Msg, Sender
from pipeline.codec import encode_candidate, encode_candidates, encode_watermark
from pipeline.errors import StateCodecError
from tests.agents.test_quota import BUYER, CONFIG, DLQ, TOPICS
from tests.agents.test_quota_order import HALF, SOURCES, timed

TOPIC = "candidates"
PARTITION = 4
CHANGELOG = "quota-changelog"


def marks(event_ms: int) -> list[bytes]:
    return [encode_watermark(event_ms, source) for source in range(SOURCES)]


HELD = encode_candidate(timed("HELD", 5000, HALF))
LATE = encode_candidate(timed("LATE", 500, HALF))
EARLY = encode_candidate(timed("EARLY", 800, HALF))
# Offsets 0-2: watermarks at 1000; 3: held until 6000; 4, 5: below the watermark, decided at
# once, their acks behind offset 3's; 6-8: the watermarks that release offset 3.
LOG = [*marks(1000), HELD, LATE, EARLY, *marks(6000)]
BASE = 3


class Owner:
    """One worker's quota processor of partition PARTITION, reading from `start`."""

    def __init__(self, table: dict[bytes, bytes], start: int, gate: asyncio.Event | None = None) -> None:
        self.table = table
        self.sent: list[bytes] = []  # declaration values, in order
        self.acked: list[int] = []
        self.offset = start
        self.metrics = Metrics()
        self.delivery = Delivery(max_acks=1)
        loop = asyncio.get_running_loop()

        async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any]:
            if gate is not None:
                await gate.wait()
            if topic != DLQ:
                self.sent.append(value)
            future: asyncio.Future[None] = loop.create_future()
            future.set_result(None)
            return future

        sender = Sender(send, TOPICS, DLQ, self.metrics, self.delivery)
        self.quota = QuotaProcessor(CONFIG, quotas=table, sender=sender, sources=SOURCES)

    async def read(self, log: list[bytes], until: int | None = None) -> None:
        """The log's messages from the next offset up to `until` (exclusive; the end if None)."""
        while self.offset < (len(log) if until is None else until):
            offset, self.offset = self.offset, self.offset + 1
            msg = Msg(TOPIC, PARTITION, offset, BUYER, log[offset])
            await self.quota.handle(msg, functools.partial(self.acked.append, offset))

    async def hand_over(self) -> list[HandOver]:
        """What agents/app.py does before the partitions go: the record, the flush, the write
        (into the table the next owner restores)."""
        records = self.quota.handover()
        await self.delivery.flush()
        assert self.delivery.settled()
        assert await write_handover(records, self._to_table, CHANGELOG)
        return records

    def _to_table(self, topic: str, key: bytes, value: bytes, partition: int) -> Awaitable[object]:
        assert (topic, partition) == (CHANGELOG, PARTITION)
        self.table[key] = value
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    @property
    def handed_over(self) -> int:
        return self.metrics.counts[("candidates_handed_over", "")]


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=10))


async def handed_over(table: dict[bytes, bytes]) -> Owner:
    """A first owner that read offsets 0-5 (3 held, 4 and 5 decided) and handed over gracefully."""
    first = Owner(table, 0)
    await first.read(LOG, until=6)
    await first.hand_over()
    return first


async def once(log: list[bytes] = LOG) -> Owner:
    """The whole log read by one owner: the declarations and the state a hand-over must match."""
    single = Owner({}, 0)
    await single.read(log)
    await single.delivery.flush()
    return single


def test_after_a_graceful_hand_over_the_candidates_decided_above_the_commit_are_published_once() -> None:
    async def body() -> None:
        single = await once()
        table: dict[bytes, bytes] = {}
        first = Owner(table, 0)
        await first.read(LOG, until=6)
        assert first.quota.held == 1 and len(first.sent) == 2, "offset 3 held, 4 and 5 decided"
        (record,) = await first.hand_over()
        assert (record.topic, record.partition, record.base) == (TOPIC, PARTITION, BASE)
        assert sorted(record.done) == [4, 5]
        assert first.acked == [0, 1, 2], "the commit stops at the held candidate"

        second = Owner(table, BASE)  # the group committed offset 3
        await second.read(LOG)
        await second.delivery.flush()
        assert first.sent + second.sent == single.sent, "every declaration once, the same bytes"
        assert second.acked == list(range(BASE, len(LOG)))
        assert second.handed_over == 2
        assert table == single.table, "the quota state as if one owner decided everything"
        assert handover_key(PARTITION) not in table, "the record is deleted once read"

    run(body)


def test_after_a_kill_the_next_owner_decides_them_again_with_the_same_bytes() -> None:
    async def body() -> None:
        single = await once()
        table: dict[bytes, bytes] = {}
        first = Owner(table, 0)
        await first.read(LOG, until=6)
        await first.delivery.flush()  # states and sends delivered, no hand-over record: a kill -9

        second = Owner(table, BASE)
        await second.read(LOG)
        assert first.sent == single.sent[:2]
        assert second.sent == single.sent, "LATE and EARLY repeated with the same bytes, HELD published"
        assert second.handed_over == 0
        assert table == single.table, "a repeat never counts twice"

    run(body)


@pytest.mark.parametrize("start", [0, 2, 4], ids=["commit-failed", "older-commit", "past-the-base"])
def test_a_record_is_dropped_when_reading_does_not_start_at_its_base(start: int) -> None:
    async def body() -> None:
        table: dict[bytes, bytes] = {}
        first = await handed_over(table)

        second = Owner(table, start)
        await second.read(LOG)
        assert second.handed_over == 0
        assert handover_key(PARTITION) not in table, "a stale record is deleted too"
        assert sorted(v for v in second.sent if v in first.sent) == sorted(first.sent), "decided again, same bytes"

    run(body)


def test_a_recorded_offset_that_holds_other_bytes_is_decided() -> None:
    """A topic recreated with the group kept: the same offsets hold other candidates."""

    async def body() -> None:
        table: dict[bytes, bytes] = {}
        await handed_over(table)

        other = encode_candidate(timed("OTHER", 600, HALF))
        replayed = [*LOG[:4], other, *LOG[5:]]
        second = Owner(table, BASE)
        await second.read(replayed)
        assert second.handed_over == 1, "offset 5 holds the same candidate, offset 4 another"
        assert len(second.sent) == 2, "OTHER and HELD decided"

    run(body)


def test_a_second_hand_over_carries_the_recorded_offsets_not_reached_yet() -> None:
    async def body() -> None:
        single = await once()
        table: dict[bytes, bytes] = {}
        first = await handed_over(table)

        second = Owner(table, BASE)
        await second.read(LOG, until=5)  # offset 3 held, offset 4 skipped, 5 not read yet
        (record,) = await second.hand_over()
        assert (record.base, sorted(record.done)) == (BASE, [4, 5])

        third = Owner(table, BASE)
        await third.read(LOG)
        await third.delivery.flush()
        assert first.sent + second.sent + third.sent == single.sent
        assert table == single.table

    run(body)


def test_nothing_is_recorded_without_a_candidate_decided_above_the_commit() -> None:
    async def body() -> None:
        owner = Owner({}, 0)
        await owner.read([HELD, *marks(1000)])  # watermarks above the held candidate: re-read, not recorded
        assert owner.quota.handover() == []
        await owner.read([HELD, *marks(1000), *marks(6000)])
        assert owner.quota.handover() == [], "everything acked: the commit covers it"

    run(body)


def test_a_decision_whose_send_is_under_way_is_not_recorded() -> None:
    async def body() -> None:
        gate = asyncio.Event()
        owner = Owner({}, 0, gate)
        await owner.read(LOG, until=4)  # 0-2 watermarks, 3 held: nothing sent yet
        deciding = asyncio.ensure_future(owner.read(LOG, until=5))  # LATE: its send waits at the gate
        await asyncio.sleep(0)
        assert not deciding.done()
        assert owner.quota.handover() == [], "LATE is not sent yet: the next owner must decide it"
        gate.set()
        await deciding
        (record,) = owner.quota.handover()
        assert sorted(record.done) == [4]

    run(body)


def test_an_unreadable_record_is_dropped_and_the_candidates_decided_again(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        table = {handover_key(PARTITION): b"not json"}
        owner = Owner(table, BASE)
        await owner.read(LOG)
        assert len(owner.sent) == 3 and owner.handed_over == 0
        assert handover_key(PARTITION) not in table

    with caplog.at_level(logging.WARNING, logger="clearance.worker.quota"):
        run(body)
    assert "hand-over record unreadable (StateCodecError)" in caplog.text


def test_a_record_not_delivered_is_reported() -> None:
    async def body() -> None:
        def failing(topic: str, key: bytes, value: bytes, partition: int) -> Awaitable[object]:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(RuntimeError("broker gone"))
            return future

        record = HandOver(TOPIC, PARTITION, BASE, {4: 1})
        assert not await write_handover([record], failing, CHANGELOG)
        assert await write_handover([], failing, CHANGELOG), "nothing to write"

    run(body)


def test_the_record_round_trips_and_bad_bytes_raise() -> None:
    record = HandOver(TOPIC, PARTITION, BASE, {4: 123, 9: 2**32 - 1})
    assert decode_handover(encode_handover(record)) == record
    assert b"partial" not in encode_handover(record), "the form written before records of many candidates"
    with_partial = HandOver(TOPIC, PARTITION, BASE, {4: 123}, {5: (7, (0, 2))})
    assert decode_handover(encode_handover(with_partial)) == with_partial
    partial_bad = b'{"topic": "t", "partition": 0, "base": 1, "done": [], "partial": [[5, 7]]}'
    for bad in (
        b"{",
        b"[]",
        b'{"topic": "t"}',
        b'{"topic": "t", "partition": 0, "base": 1, "done": [[1]]}',
        partial_bad,
    ):
        with pytest.raises(StateCodecError):
            decode_handover(bad)
    assert not handover_key(PARTITION).startswith(BUYER[:1]), "never a buyer's key"


def test_the_candidates_decided_of_a_record_of_many_are_handed_over_with_their_positions() -> None:
    """agents/batch.py: a record carries several candidates. A record all decided above the held
    one is handed over whole; of one with a candidate still held, the positions of those decided.
    The next owner decides only the others: no repeat."""

    async def body() -> None:
        early2 = encode_candidate(timed("EARLY2", 900, HALF))
        held2 = encode_candidate(timed("HELD2", 7000, HALF))
        # 3: held; 4: two candidates decided at once; 5: one decided at once, one held.
        log = [*marks(1000), HELD, encode_candidates([LATE, EARLY]), encode_candidates([held2, early2])]
        log += [*marks(6000), *marks(8000)]
        single = await once(log)
        table: dict[bytes, bytes] = {}
        first = Owner(table, 0)
        await first.read(log, until=6)
        assert first.quota.held == 2 and len(first.sent) == 3
        (record,) = await first.hand_over()
        assert (record.base, sorted(record.done)) == (BASE, [4])
        assert record.partial == {5: (zlib.crc32(log[5]), (1,))}, "of offset 5, EARLY2 (its second) only"
        assert decode_handover(encode_handover(record)) == record
        assert first.acked == [0, 1, 2]

        second = Owner(table, BASE)  # the group committed offset 3
        await second.read(log)
        await second.delivery.flush()
        assert second.handed_over == 3, "the two candidates of offset 4 and one of offset 5"
        assert first.sent + second.sent == single.sent, "every declaration once, the same bytes"
        assert second.acked == list(range(BASE, len(log)))
        assert table == single.table, "the quota state as if one owner decided everything"

    run(body)


def test_a_partial_record_whose_bytes_differ_is_decided_whole() -> None:
    """The positions count only for the same bytes at that offset (a recreated topic, another
    record): otherwise every candidate of it is decided, as without a record."""

    async def body() -> None:
        held2 = encode_candidate(timed("HELD2", 7000, HALF))
        log = [*marks(1000), HELD, encode_candidates([held2, EARLY]), *marks(8000)]
        table: dict[bytes, bytes] = {}
        first = Owner(table, 0)
        await first.read(log, until=5)
        (record,) = await first.hand_over()
        assert record.partial == {4: (zlib.crc32(log[4]), (1,))} and record.done == {}
        other = [*log[:4], encode_candidates([held2, LATE]), *log[5:]]
        second = Owner(table, BASE)
        await second.read(other)
        await second.delivery.flush()
        assert second.handed_over == 0 and len(second.sent) == 3, "HELD, LATE and HELD2 all decided"

    run(body)
