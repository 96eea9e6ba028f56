"""The join agent's merge by appTime, on fakes: a dict for the tables, a recording sender,
a manual wall clock and a scripted answer to "does the broker hold unread messages?".

Issue 10: two workers started together decided a whole partition as if its documents had
never met. The trace of the failing run showed the orders of one partition applied one
after the other, long before its payments and waybills: the merge passed over the empty
payments and waybills queues because the consumer's high watermark of those partitions,
last fetched while they were still empty, said nothing was unread. These tests pin the
rule: an empty queue is passed over only after `merge_wait_ms` of silence, with the head that
old by its producer's timestamp, *and* when the broker confirms nothing of it is unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest

from agents.acks import Delivery
from agents.join import Flow, JoinProcessor
from agents.metrics import Metrics
from agents.sender import Headers, Msg, Sender
from clearance.settings import Settings
from pipeline.timeconv import app_time_ms
from tests.fixtures.docs import order, payment, raw, waybill

TOPICS = {"orders": "order", "payments": "payment", "waybills": "waybill"}
PARTITION = 3
WAIT_MS = 2_000


class Harness:
    """A JoinProcessor over fakes, and what it sent."""

    def __init__(
        self,
        flow: Flow | None = None,
        merge_buffer: int = 0,
        spills: Any = None,
        *,
        publish_every_ms: int | None = 1000,  # JoinProcessor's default
        candidates_partitions: int = 0,
    ) -> None:
        """`publish_every_ms` and `candidates_partitions`: watermarks published, kept in `marks`
        as (candidates partition, the record's `watermark` entries)."""
        self.wall = 1_000_000
        self.fed = {PARTITION}  # the partitions fed: the only ones the join may ask about
        self.marks: list[tuple[int, list[list[Any]]]] = []
        self.unread: set[str] = set()  # topics the "broker" holds unread messages of
        self.asked: list[str] = []
        self.woken: list[tuple[int, int]] = []  # (partition, wall ms) the join asked to be woken at
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.states: dict[bytes, bytes] = {}
        self.clocks: dict[bytes, bytes] = {}  # the clock table: each partition's event time
        self.offsets = dict.fromkeys(TOPICS, 0)  # the offset guard's next offset of each topic
        self.handing_over = False  # as the guard is while the drain hands over what it read directly
        self.ends: dict[str, int] = {}  # the broker's log end of a topic, when beyond what was fed
        self.ends_asked = 0
        self.broker_down = False
        self.revoke_on_ask = False  # a rebalance comes while the join awaits the broker's log end
        self.suspend_on_ask = False  # one begins then (Faust suspends its flow; nothing forgotten yet)
        self.flowing = True
        self.ticks = 0
        self.tick_acks: list[int] = []  # the offsets of the ticks acked, in the order acked
        self.acked: list[tuple[str, int]] = []
        loop = asyncio.get_running_loop()

        async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any]:
            self.sent.append((topic, orjson.loads(value)))
            future: asyncio.Future[None] = loop.create_future()
            future.set_result(None)
            return future

        async def send_to(topic: str, partition: int, value: bytes) -> None:
            assert topic == "candidates"
            self.marks.append((partition, orjson.loads(value)["watermark"]))

        async def unread(topic: str, partition: int, since_ms: int) -> bool:
            assert partition in self.fed
            self.asked.append(topic)
            return topic in self.unread

        async def log_end(topic: str, partition: int) -> int:
            assert partition in self.fed
            self.ends_asked += 1
            if self.revoke_on_ask:
                self.revoke_on_ask = False
                self.join.forget_partitions()
            if self.suspend_on_ask:
                self.suspend_on_ask = False
                self.flowing = False
            if self.broker_down:
                raise ConnectionError("broker unreachable")
            return max(self.ends.get(topic, 0), self.offsets[topic])

        metrics = Metrics()
        delivery = Delivery(max_acks=1)
        dests = {"matched": "matched", "flagged": "flagged", "candidates": "candidates"}
        sender = Sender(send, dests, "deadletter", metrics, delivery, send_to=send_to, partitions=candidates_partitions)  # type: ignore[arg-type]
        self.delivery = delivery
        self.join = JoinProcessor(
            Settings().rules(),
            kinds=TOPICS,  # type: ignore[arg-type]
            tick_topic="ticks",
            idle_ms=30_000,
            states=self.states,
            clocks=self.clocks,
            scan=lambda partition: iter(()),
            committed=lambda topic, partition: None,
            unread=unread,
            merge_wait_ms=WAIT_MS,
            sender=sender,
            wall=lambda: self.wall,
            flow=flow,
            merge_buffer=merge_buffer,
            spills=spills,
            publish_every_ms=publish_every_ms,
            wake=lambda partition, at: self.woken.append((partition, at)),
            position=lambda topic, partition: None if self.handing_over else self.offsets[topic],
            log_end=log_end,
            flowing=lambda: self.flowing,
        )

    async def feed(
        self, topic: str, doc: dict[str, Any], partition: int = PARTITION, *, sent_ms: int | None = None
    ) -> None:
        """One document; `sent_ms`: its producer's timestamp (none: unknown)."""
        self.fed.add(partition)
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        msg = Msg(topic, partition, offset, doc["orderNo"].encode(), raw(doc), sent_ms)
        await self.join.handle(msg, lambda: self.acked.append((topic, offset)))

    async def feed_tail(self, topic: str, docs: list[dict[str, Any]], partition: int = PARTITION) -> None:
        """Documents read at once, as the offset guard reads a tail Faust never delivered: its next
        offset is past all of them before the first is handed over, then they go one by one, with
        the guard's `handing_over` set as the drain sets it (agents/stream.py)."""
        self.fed.add(partition)
        first = self.offsets[topic]
        self.offsets[topic] += len(docs)
        self.handing_over = True
        try:
            for offset, doc in enumerate(docs, start=first):
                msg = Msg(topic, partition, offset, doc["orderNo"].encode(), raw(doc), None)
                await self.join.handle(msg, lambda offset=offset: self.acked.append((topic, offset)))  # type: ignore[misc]
        finally:
            self.handing_over = False

    async def tick(self, partition: int = PARTITION, *, event_ms: int | None = None) -> None:
        """A timer's tick, or with `event_ms` a flush (`{"eventTime": ms}`); its ack is recorded."""
        self.fed.add(partition)
        offset = self.ticks
        self.ticks += 1
        value = b'{"wall": 1}' if event_ms is None else orjson.dumps({"eventTime": event_ms})
        await self.join.handle(Msg("ticks", partition, offset, None, value), lambda: self.tick_acks.append(offset))

    async def ended(self, topic: str, end: Any, partition: int = PARTITION) -> None:
        """A tick `{"ended": topic, "end": end}`: the topic's producer wrote nothing more of it
        (produced now: it covers documents produced up to now)."""
        self.fed.add(partition)
        offset = self.ticks
        self.ticks += 1
        value = orjson.dumps({"ended": topic, "end": end})
        tick = Msg("ticks", partition, offset, None, value, self.wall)
        await self.join.handle(tick, lambda: self.tick_acks.append(offset))

    async def through(self, app_time: str, ends: dict[str, Any], partition: int = PARTITION) -> None:
        """A tick `{"through": ms, "ends": ends}`: every document up to `app_time` is delivered."""
        self.fed.add(partition)
        offset = self.ticks
        self.ticks += 1
        value = orjson.dumps({"through": app_time_ms(app_time), "ends": ends})
        tick = Msg("ticks", partition, offset, None, value, self.wall)
        await self.join.handle(tick, lambda: self.tick_acks.append(offset))

    def candidates(self) -> list[str]:
        return [d[3] for topic, d in self.sent if topic == "candidates"]

    def declarations(self) -> list[tuple[str, list[str]]]:
        return [(d["orderNo"], d["reasons"]) for topic, d in self.sent if topic in ("matched", "flagged")]

    async def settle(self) -> None:
        await self.delivery.flush()


def run(test: Any) -> None:
    async def main() -> None:
        await test(Harness())

    asyncio.run(main())


def test_orders_wait_while_the_broker_holds_payments_the_consumer_has_not_fetched() -> None:
    """The failing run, in small: the partition's queues were empty and silent since the
    assignment; the orders came first. The broker says payments and waybills are there."""

    async def body(h: Harness) -> None:
        h.wall += 25_000  # the replay starts 25 s after the assignment: every queue is "silent"
        h.unread = {"payments", "waybills"}
        early = order("PK1", "20261111000000")
        late = order("PK2", "20261112010000")  # past PK1's 24 h window
        await h.feed("orders", early)
        await h.feed("orders", late)
        h.wall += 10_000
        await h.tick()
        assert h.declarations() == [], "nothing may be decided while the broker holds the other documents"
        assert not h.acked, "held documents are not acked"
        h.unread = set()
        await h.feed("payments", payment("PK1", "20261111000100"))
        await h.feed("waybills", waybill("PK1", "20261111000200"))
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert h.candidates() == ["PK1"], "PK1's three documents met before PK2 moved event time"

    run(body)


def test_an_empty_queue_is_passed_over_after_the_wait_when_the_broker_has_nothing() -> None:
    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        assert h.join.open_windows == 0, "the waybills queue has not been silent for the wait yet"
        assert h.asked == [], "the broker is asked only once the wait is over"
        assert h.woken[-1] == (PARTITION, h.wall + WAIT_MS)
        h.wall += WAIT_MS
        await h.tick()
        assert h.asked[0] == "waybills"
        assert h.join.open_windows == 1, "both documents applied into one open window"
        await h.feed("waybills", waybill("PK1", "20261111000200"))
        await h.settle()
        assert h.candidates() == [], "the waybill is not the wait old yet: an earlier document may be in flight"
        assert h.woken[-1] == (PARTITION, h.wall + WAIT_MS), "the merge names the moment its wait ends"
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert h.candidates() == ["PK1"]
        assert sorted(h.acked) == [("orders", 0), ("payments", 0), ("waybills", 0)]

    run(body)


def test_a_head_waits_out_the_wait_from_its_producer_s_timestamp_not_from_its_receipt() -> None:
    """After a quiet spell every queue has been silent for long, so silence alone let the first
    document through at once, while one produced before it on another topic could still be on
    its way (librdkafka sends the partitions of one producer in separate requests: 1.5 s apart
    in a two-worker stress run). The head's age by its producer's timestamp covers that; a
    timestamp in the future counts as the receipt."""

    async def body(h: Harness) -> None:
        await h.tick()  # the partition's first message after its assignment: its queues count as silent from here
        h.wall += 60_000  # a quiet minute: every queue silent for long
        await h.feed("payments", payment("PK1", "20261111000100"), sent_ms=h.wall - 500)
        assert h.join.open_windows == 0, "produced 0.5 s ago: 1.5 s of the wait left"
        assert h.woken == [(PARTITION, h.wall + WAIT_MS - 500)]
        h.wall += WAIT_MS - 501
        await h.tick()
        assert h.join.open_windows == 0 and h.asked == [], "1 ms short of the wait: the broker is not asked"
        h.wall += 1
        await h.tick()
        assert h.join.open_windows == 1, "the wait is over and the broker holds nothing unread"
        h.wall += 60_000
        await h.feed("orders", order("PK2", "20261111000200"), sent_ms=h.wall + 3_600_000)
        assert h.woken[-1] == (PARTITION, h.wall + WAIT_MS), "a producer's clock ahead of ours counts as the receipt"
        h.wall += WAIT_MS
        await h.tick()
        assert h.join.open_windows == 2

    run(body)


def test_each_document_s_wait_from_its_producer_s_timestamp_is_counted_once_taken() -> None:
    """`clearance_input_wait_seconds`: how long a document waited between its Kafka timestamp and
    the join taking it; a timestamp ahead of the wall clock counts as no wait, an unknown one
    (and a tick) not at all."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PW1", "20261111000100"), sent_ms=h.wall - 30)  # 25-50 ms
        await h.feed("payments", payment("PW1", "20261111000200"), sent_ms=h.wall - 700)  # 0.5-1 s
        await h.feed("waybills", waybill("PW1", "20261111000300"), sent_ms=h.wall + 5_000)  # ahead: 0
        await h.feed("orders", order("PW2", "20261111000400"))  # unknown timestamp
        await h.tick()
        m = h.join.metrics
        assert sum(m.input_wait.counts) == 3 and m.input_wait.sum_ms == 730
        assert m.input_wait.counts[0] == 1 and m.input_wait.counts[1] == 1 and m.input_wait.counts[5] == 1

    run(body)


def test_a_silent_topic_with_unread_messages_is_never_passed_over() -> None:
    async def body(h: Harness) -> None:
        h.unread = {"waybills"}
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        for _ in range(5):
            h.wall += WAIT_MS
            await h.tick()
        assert h.join.open_windows == 0 and h.join.buffered == 2

    run(body)


def test_in_merge_order_the_earliest_head_goes_first() -> None:
    """All three queues hold documents: the smallest appTime is applied first, whatever the
    arrival order, so a withdrawal (appType 3) and its replacement keep their order."""

    async def body(h: Harness) -> None:
        first = payment("PK1", "20261111000100")
        withdrawn = payment("PK1", "20261111000200", appType=3, guid="W-1")
        again = payment("PK1", "20261111000300", guid="P-2")
        await h.feed("waybills", waybill("PK1", "20261111000400"))
        await h.feed("payments", first)
        await h.feed("payments", withdrawn)
        await h.feed("payments", again)
        await h.feed("orders", order("PK1", "20261111000000"))
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert h.candidates() == ["PK1"]
        assert h.declarations() == [], "no document after the decision"

    run(body)


def test_a_partition_with_unread_input_is_late_not_idle() -> None:
    """The idle rule moves event time with the wall clock only when nothing is unread."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        h.wall += WAIT_MS
        await h.tick()
        assert h.join.open_windows == 1
        h.unread = {"waybills"}
        h.wall += 2 * 86_400_000  # two days of wall time without input: past PK1's window
        await h.tick()
        assert h.declarations() == [], "a partition whose waybills are unread must not close windows"
        h.unread = set()
        await h.tick()
        await h.settle()
        assert h.declarations() == [("PK1", ["MISSING_PAYMENT", "MISSING_WAYBILL"])]

    run(body)


def test_a_dead_letter_is_sent_in_its_turn_and_not_before() -> None:
    """An invalid payment behind a payment that waits for the merge: dead-lettered when its
    queue entry leaves, with its ack. Sent on receipt, it went out again from the next owner
    when a graceful hand-over came first (its ack, hence the commit, had not passed it)."""

    async def body(h: Harness) -> None:
        h.unread = {"waybills"}  # the merge holds the payments queue's head
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        bad = payment("PK2", "20261111000200")
        bad["amountPaid"] = "not money"
        await h.feed("payments", bad)
        await h.settle()
        assert [t for t, _ in h.sent if t == "deadletter"] == [], "waits behind the held payment"
        assert h.acked == []
        h.join.forget_partitions()  # a hand-over now: the next owner reads both payments again
        assert [t for t, _ in h.sent if t == "deadletter"] == [], "nothing of it left this owner"

    run(body)

    async def turn(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        bad = payment("PK2", "20261111000200")
        bad["amountPaid"] = "not money"
        await h.feed("payments", bad)
        await h.feed("waybills", waybill("PK1", "20261111000300"))
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        letters = [d for t, d in h.sent if t == "deadletter"]
        assert len(letters) == 1 and letters[0]["error"] == "INVALID_RECORD", letters
        assert ("payments", 1) in h.acked and h.acked.index(("payments", 0)) < h.acked.index(("payments", 1))

    run(turn)


def test_one_watermark_record_per_candidates_partition_carries_every_partition_owned() -> None:
    """A worker publishes the event times of all its join partitions together, one record on
    each candidates partition, at most once per interval (a record per partition made P x P
    records each interval), at once when a partition that was published idle has input."""

    async def body() -> None:
        h = Harness(publish_every_ms=100, candidates_partitions=4)
        marks = h.marks

        def rounds() -> list[dict[int, tuple[int, bool]]]:
            """Each publication: the (event time, idle) per source, checked to be the same on all 4."""
            out = []
            for start in range(0, len(marks), 4):
                batch = marks[start : start + 4]
                assert [p for p, _ in batch] == [0, 1, 2, 3]
                assert all(m == batch[0][1] for _, m in batch)
                out.append({source: (event_ms, idle) for source, event_ms, idle in batch[0][1]})
            return out

        await h.feed("orders", order("PK1", "20261111000000"), partition=1)
        await h.feed("orders", order("PK2", "20261111000000"), partition=2)  # the same interval: not published alone
        assert len(rounds()) == 1 and set(rounds()[0]) == {1}
        h.wall += 100
        await h.feed("payments", payment("PK1", "20261111000100"), partition=1)
        assert len(rounds()) == 2 and set(rounds()[1]) == {1, 2}
        h.wall += 40_000
        await h.tick(partition=2)  # PK2 applied (its queues were silent past the wait); input just now
        h.wall += 40_000
        await h.tick(partition=2)  # no input for the idle time, nothing unread: idle
        last = rounds()[-1]
        assert last[2][1] is True and last[1][1] is False
        published = len(rounds())
        await h.feed("waybills", waybill("PK2", "20261111000200"), partition=2)  # input again: at once, not idle
        assert len(rounds()) == published + 1 and rounds()[-1][2][1] is False

    asyncio.run(asyncio.wait_for(body(), timeout=10))


FLUSH_MS = 1_900_000_000_000  # an event time past every window and retention of the documents below


def test_a_flush_waits_for_the_input_the_broker_held_when_it_came() -> None:
    """Faust hands a tick over as soon as it is fetched, ahead of a backlog of input. A flush
    (`{"eventTime": ms}`) applied then closed windows whose last documents were still at the
    broker, and decided them on what had been received: one bench run in ~65 published 4
    declarations the embedded runner does not. It now waits for the input topics' log ends as
    the broker had them when it came; the ticks after it wait too (acks stay in offset order)."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        h.ends["waybills"] = 1  # PK1's waybill is at the broker, not received yet
        h.unread = {"waybills"}
        await h.tick(event_ms=FLUSH_MS)
        await h.settle()
        assert h.declarations() == [] and h.candidates() == [], "PK1 must not be closed without its waybill"
        assert h.tick_acks == [], "the flush is not applied: not acked"
        asked = h.ends_asked
        h.wall += 1_000
        await h.tick()
        await h.settle()
        assert h.declarations() == [] and h.tick_acks == [], "a tick after a waiting flush is acked after it"
        assert h.ends_asked == asked, "the ends are asked once, when the flush comes"
        h.unread = set()
        await h.feed("waybills", waybill("PK1", "20261111000200"))
        await h.settle()
        assert h.candidates() == ["PK1"], "all three documents met, then the flush moved event time"
        assert h.declarations() == [], "no window closed with a document missing"
        assert h.ends_asked == asked, "input does not ask the broker"
        assert h.tick_acks == [0, 1], "the flush's ack, then the tick's after it"
        assert h.join.metrics.counts[("flushes_waited", "")] == 1
        assert h.join.partitions[PARTITION].loop.event_ms == FLUSH_MS
        assert h.join.partitions[PARTITION].flush is None

    run(body)


def test_a_flush_waits_for_the_last_message_of_a_tail_read_at_once() -> None:
    """The offset guard reads a tail Faust never delivered in one go and hands it over one message at
    a time. The flush counted the guard's next offset, which the read had moved to the end, so it
    applied at the tail's first message and closed every window whose documents were still in the
    rest (two-process test: 299 declarations lost). While the guard hands a read over, the flush
    counts what the join itself received."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("orders", order("PK2", "20261111000010"))
        h.ends = {"payments": 2, "waybills": 2}
        h.unread = {"payments", "waybills"}
        await h.tick(event_ms=FLUSH_MS)
        await h.settle()
        assert h.tick_acks == [] and h.declarations() == []
        h.unread = set()
        await h.feed_tail("payments", [payment("PK1", "20261111000100"), payment("PK2", "20261111000110")])
        await h.settle()
        assert h.tick_acks == [] and h.declarations() == [], "the waybills are not received yet"
        await h.feed_tail("waybills", [waybill("PK1", "20261111000200"), waybill("PK2", "20261111000210")])
        await h.settle()
        assert h.candidates() == ["PK1", "PK2"], "every window complete, then the flush"
        assert h.declarations() == [] and h.tick_acks == [0]

    run(body)


def test_a_flush_counts_a_hole_at_the_end_of_the_log_as_received() -> None:
    """A transaction marker (or a deleted record) after the last message: the log end is past every
    message, and the guard's next offset past the hole. Counting only the messages received, the
    flush would wait for an offset that holds none."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        h.offsets["orders"] += 1  # the guard read past the hole: offset 1 holds no message
        await h.tick(event_ms=FLUSH_MS)
        await h.settle()
        assert h.declarations() == [("PK1", ["MISSING_PAYMENT", "MISSING_WAYBILL"])]
        assert h.tick_acks == [0]

    run(body)


def test_a_topic_that_ended_is_not_waited_for_once_received_to_its_end() -> None:
    """The end of a trace: its payments end minutes of appTime before its orders and waybills, and
    every document after that waited for the payments topic to fall silent. Once its producer
    says it ended, and everything up to that end is received, its empty queue holds no one."""

    async def body(h: Harness) -> None:
        await h.ended("payments", 2)  # two payments written, none received yet
        for no, at in (("PK1", "0000"), ("PK2", "0200"), ("PK3", "0400"), ("PK9", "0900")):
            await h.feed("orders", order(no, f"2026111100{at}"), sent_ms=h.wall)
        for no, at in (("PK1", "0100"), ("PK2", "0300"), ("PK3", "0500"), ("PK9", "0950")):
            await h.feed("waybills", waybill(no, f"2026111100{at}"), sent_ms=h.wall)
        await h.feed("payments", payment("PK1", "20261111000050"), sent_ms=h.wall)
        await h.settle()
        assert sorted(h.acked) == [("orders", 0), ("payments", 0)], (
            "the second payment is still on its way: PK1's waybill waits for it"
        )
        await h.feed("payments", payment("PK2", "20261111000250"), sent_ms=h.wall)
        await h.settle()
        assert sorted(h.acked)[:4] == [("orders", 0), ("orders", 1), ("orders", 2), ("orders", 3)]
        assert ("waybills", 2) in h.acked, "PK3 passed the empty payments queue at once"
        assert ("waybills", 3) not in h.acked, "the orders topic has not ended: PK9's waybill waits for it"
        assert "payments" not in h.asked, "nothing to ask the broker about a topic that ended"
        assert h.candidates() == ["PK1", "PK2"]

    run(body)


def test_input_beyond_a_topic_s_end_makes_the_merge_wait_for_it_again() -> None:
    async def body(h: Harness) -> None:
        await h.ended("payments", 0)
        for no, at in (("PK1", "0000"), ("PK5", "0500")):
            await h.feed("orders", order(no, f"2026111100{at}"), sent_ms=h.wall)
        for no, at in (("PK1", "0100"), ("PK6", "0600")):
            await h.feed("waybills", waybill(no, f"2026111100{at}"), sent_ms=h.wall)
        await h.settle()
        assert sorted(h.acked) == [("orders", 0), ("orders", 1), ("waybills", 0)]
        await h.feed("payments", payment("PK0", "20261111000050"), sent_ms=h.wall)  # a new replay
        await h.feed("orders", order("PK7", "20261111000700"), sent_ms=h.wall)
        await h.settle()
        assert h.acked[-1] == ("payments", 0)
        assert ("waybills", 1) not in h.acked, "the payments topic has input again: its silence counts"
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert ("waybills", 1) in h.acked

    run(body)


def test_a_head_within_the_producer_s_time_mark_passes_an_empty_queue_received_to_its_end() -> None:
    """Between documents of a sparse topic: the producer says everything up to an appTime is
    delivered, and where each topic of the partition ended then. A head up to that appTime
    cannot be overtaken by a document still to come once those ends are received."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"), sent_ms=h.wall)
        await h.feed("payments", payment("PK1", "20261111000010"), sent_ms=h.wall)
        await h.feed("orders", order("PK2", "20261111000030"), sent_ms=h.wall)
        await h.settle()
        assert h.acked == [], "the waybills topic is neither silent nor covered"
        await h.through("20261111000010", {"orders": 2, "payments": 1, "waybills": 1})
        await h.settle()
        assert h.acked == [], "a waybill up to that appTime is still on its way"
        await h.feed("waybills", waybill("PK1", "20261111000005"), sent_ms=h.wall)
        await h.settle()
        assert h.acked == [("orders", 0), ("waybills", 0), ("payments", 0)], "PK2 is past the mark: it waits"
        assert "waybills" not in h.asked and "payments" not in h.asked
        await h.through("20261111000040", {"orders": 2, "payments": 1, "waybills": 1})
        await h.settle()
        assert h.acked[-1] == ("orders", 1)

    run(body)


@pytest.mark.parametrize("mark", ["through", "ended"])
def test_a_document_produced_after_a_watermark_is_not_covered_by_it(mark: str) -> None:
    """Another producer, or a later replay onto the same topics: the watermark says nothing of
    its documents, which wait for the silence as without one."""

    async def body(h: Harness) -> None:
        if mark == "through":
            await h.through("20261112000000", {"orders": 0, "payments": 0, "waybills": 0})
        else:
            await h.ended("payments", 0)
            await h.ended("waybills", 0)
        h.wall += 1
        await h.feed("orders", order("PK1", "20261111000000"), sent_ms=h.wall)
        await h.settle()
        assert h.acked == [], "produced after the mark: the merge waits for the other topics"
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert h.acked == [("orders", 0)]

    run(body)


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        ({"through": "1", "ends": {"orders": 0, "payments": 0, "waybills": 0}}, "through is not an integer"),
        ({"through": 1, "ends": {"orders": 0, "payments": 0}}, "ends is not an offset for each input topic"),
        ({"through": 1, "ends": {"orders": 0, "payments": 0, "waybills": -1}}, "ends is not an offset for each"),
        ({"through": 1}, "ends is not an offset for each input topic"),
    ],
)
def test_a_time_mark_without_a_time_or_an_end_per_topic_is_dead_lettered(tick: dict[str, Any], reason: str) -> None:
    async def body(h: Harness) -> None:
        h.fed.add(PARTITION)
        await h.join.handle(Msg("ticks", PARTITION, 0, None, orjson.dumps(tick)), lambda: h.tick_acks.append(0))
        letters = [d for t, d in h.sent if t == "deadletter"]
        assert len(letters) == 1 and letters[0]["reason"].startswith(f"invalid tick: {reason}")
        await h.settle()
        assert h.tick_acks == [0]

    run(body)


@pytest.mark.parametrize(
    ("topic", "end", "reason"),
    [
        ("refunds", 3, "invalid tick: ended names no input topic of this worker"),
        ("payments", -1, "invalid tick: end is not an offset"),
        ("payments", "3", "invalid tick: end is not an offset"),
        ("payments", None, "invalid tick: end is not an offset"),
    ],
)
def test_an_end_tick_that_names_no_input_or_no_offset_is_dead_lettered(topic: str, end: Any, reason: str) -> None:
    async def body(h: Harness) -> None:
        await h.ended(topic, end)
        letters = [d for t, d in h.sent if t == "deadletter"]
        assert [d["reason"] for d in letters] == [reason]
        await h.settle()
        assert h.tick_acks == [0]
        await h.feed("orders", order("PK1", "20261111000000"), sent_ms=h.wall)
        await h.feed("waybills", waybill("PK1", "20261111000100"), sent_ms=h.wall)
        assert h.acked == [], "the merge still waits for the payments topic"

    run(body)


def test_a_flush_with_its_input_received_applies_at_once_and_passes_the_merge_s_wait() -> None:
    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        assert h.join.open_windows == 0, "the merge waits for the silent waybills topic"
        await h.tick(event_ms=FLUSH_MS)
        await h.settle()
        assert h.declarations() == [("PK1", ["MISSING_WAYBILL"])]
        assert h.tick_acks == [0]
        assert h.join.metrics.counts[("flushes_waited", "")] == 0
        assert sorted(h.acked) == [("orders", 0), ("payments", 0)]

    run(body)


def test_a_flush_waits_while_the_broker_cannot_say_and_asks_again_on_each_tick() -> None:
    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        h.broker_down = True
        await h.tick(event_ms=FLUSH_MS)
        await h.tick()
        await h.settle()
        assert h.declarations() == [] and h.tick_acks == [], "no end known: the flush waits"
        assert h.ends_asked == 2, "asked when it came and again on the next tick"
        h.broker_down = False
        await h.tick()
        await h.settle()
        assert h.declarations() == [("PK1", ["MISSING_PAYMENT", "MISSING_WAYBILL"])]
        assert h.tick_acks == [0, 1, 2]

    run(body)


def test_a_second_flush_before_the_first_applies_joins_it() -> None:
    """The later event time and the later ends: both apply once the later input is received."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        h.ends["payments"] = 1
        await h.tick(event_ms=FLUSH_MS - 1_000)
        h.ends["payments"] = 2
        await h.tick(event_ms=FLUSH_MS)
        await h.feed("payments", payment("PK1", "20261111000100"))
        await h.settle()
        assert h.declarations() == [] and h.tick_acks == [], "the second flush's ends are not reached yet"
        await h.feed("payments", payment("PK9", "20261111000200"))
        await h.settle()
        assert h.tick_acks == [0, 1]
        assert h.join.partitions[PARTITION].loop.event_ms == FLUSH_MS
        assert sorted(h.declarations()) == [("PK1", ["MISSING_WAYBILL"]), ("PK9", ["MISSING_ORDER", "MISSING_WAYBILL"])]

    run(body)


@pytest.mark.parametrize("rebalance", ["begun", "revoked"])
def test_a_rebalance_while_a_flush_asks_the_broker_applies_nothing_more(rebalance: str) -> None:
    """A rebalance began (Faust suspended its flow) or the partitions were revoked while the flush
    awaited its ends: applied after that, it drained the queued documents and forgot every state
    after the hand-over had sealed the last acks, and the new owner read those documents again
    without their states (10 extra declarations)."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        await h.feed("payments", payment("PK1", "20261111000100"))
        assert h.join.open_windows == 0, "queued: the merge waits for the silent waybills topic"
        h.revoke_on_ask, h.suspend_on_ask = rebalance == "revoked", rebalance == "begun"
        await h.tick(event_ms=FLUSH_MS)
        await h.settle()
        assert h.declarations() == [] and h.candidates() == [], "nothing applied, nothing closed"
        assert h.acked == [], "the owner reads the documents again"  # the tick's own ack: dropped
        # by the drain, as every ack of a message received before a rebalance (tests/agents/test_stream.py)
        assert h.clocks == {}, "event time not moved"
        assert (PARTITION in h.join.partitions) == (rebalance == "begun"), "forgotten only at the revocation"

    run(body)


def test_a_waiting_flush_is_left_unacked_at_a_rebalance() -> None:
    """The next owner reads it again from the committed offset, and waits for its input itself."""

    async def body(h: Harness) -> None:
        await h.feed("orders", order("PK1", "20261111000000"))
        h.ends["payments"] = 1
        await h.tick(event_ms=FLUSH_MS)
        h.join.forget_partitions()
        await h.feed("payments", payment("PK1", "20261111000100"))
        await h.settle()
        assert h.tick_acks == [] and h.declarations() == []

    run(body)
