"""The quota stage's order on Kafka (agents.quota): candidates held until every join
partition's watermark has passed their eventTime, then counted in (eventTime, orderNo)
order; acks in offset order. On fakes: a dict table, a recording send, a real Delivery."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import orjson
import pytest

from agents.acks import Delivery
from agents.metrics import Metrics
from agents.quota import QuotaProcessor
from agents.sender import Headers, Msg, Sender
from pipeline.codec import decode_quota, encode_candidate, encode_candidates, encode_watermark, encode_watermarks
from pipeline.join import Candidate
from tests.agents.test_quota import CONFIG, DLQ, TOPICS, candidate

SOURCES = 3
LIMIT = CONFIG.annual_limit_fen


def timed(order_no: str, event_ms: int, fen: int) -> Candidate:
    """A clean candidate of the fixture buyer with its eventTime and dutiable value set."""
    made = candidate(order_no)
    return made._replace(declaration=made.declaration._replace(event_time_ms=event_ms, dutiable_value=fen))


class Harness:
    def __init__(self, sources: int | None = SOURCES) -> None:
        self.out: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self.acked: list[int] = []
        self.offset = 0
        loop = asyncio.get_running_loop()

        async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any]:
            (self.dead if topic == DLQ else self.out).append(orjson.loads(value))
            future: asyncio.Future[None] = loop.create_future()
            future.set_result(None)
            return future

        self.delivery = Delivery(max_acks=1)
        sender = Sender(send, TOPICS, DLQ, Metrics(), self.delivery)
        self.quota = QuotaProcessor(CONFIG, quotas={}, sender=sender, sources=sources)

    async def feed(self, value: bytes) -> None:
        offset, self.offset = self.offset, self.offset + 1
        await self.quota.handle(Msg("candidates", 0, offset, b"k", value), lambda: self.acked.append(offset))

    async def marks(self, event_ms: int, sources: range = range(SOURCES)) -> None:
        for source in sources:
            await self.feed(encode_watermark(event_ms, source))

    def verdicts(self) -> list[tuple[str, bool]]:
        return [(d["orderNo"], "ANNUAL_QUOTA_EXCEEDED" in d["reasons"]) for d in self.out]

    async def settle(self) -> None:
        await self.delivery.flush()


def run(body: Callable[[Harness], Coroutine[Any, Any, None]], sources: int | None = SOURCES) -> None:
    async def main() -> None:
        await body(Harness(sources))

    asyncio.run(main())


HALF = LIMIT // 2 + 100  # two of these exceed the limit: the second one counted is rejected

ARRIVALS = [
    # (arrival order of (orderNo, eventTime)), the verdicts in (eventTime, orderNo) order
    ([("B", 2000), ("A", 1000)], [("A", False), ("B", True)]),
    ([("A", 1000), ("B", 2000)], [("A", False), ("B", True)]),
    ([("Z", 1000), ("A", 1000)], [("A", False), ("Z", True)]),  # same second: by orderNo
    ([("A10", 1000), ("A9", 1000)], [("A10", False), ("A9", True)]),  # orderNo as text
]


@pytest.mark.parametrize(("arrivals", "verdicts"), ARRIVALS)
def test_counted_in_event_time_then_order_number_order(
    arrivals: list[tuple[str, int]], verdicts: list[tuple[str, bool]]
) -> None:
    async def body(h: Harness) -> None:
        for order_no, event_ms in arrivals:
            await h.feed(encode_candidate(timed(order_no, event_ms, HALF)))
        assert h.out == [] and h.quota.held == 2, "held until every join partition has passed them"
        await h.marks(2001, range(SOURCES - 1))
        assert h.out == [], "one join partition has not said where it is"
        await h.marks(2001, range(SOURCES - 1, SOURCES))
        await h.settle()
        assert h.verdicts() == verdicts
        assert h.acked == list(range(h.offset)), "every message acked once, in offset order"

    run(body)


def test_a_candidate_waits_while_any_watermark_is_at_or_below_its_event_time() -> None:
    async def body(h: Harness) -> None:
        await h.marks(1000)
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        assert h.out == [], "a watermark equal to its eventTime is not past it (ties wait)"
        await h.marks(1001, range(1))
        assert h.out == [], "the smallest watermark decides"
        await h.marks(1001)
        assert h.verdicts() == [("A", False)]

    run(body)


def test_a_candidate_already_below_the_watermark_is_decided_at_once() -> None:
    async def body(h: Harness) -> None:
        await h.marks(5000)
        await h.feed(encode_candidate(timed("LATE", 1000, HALF)))
        await h.settle()
        assert h.verdicts() == [("LATE", False)] and h.quota.held == 0
        assert h.acked == list(range(h.offset))

    run(body)


def test_acks_wait_behind_a_held_candidate() -> None:
    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("A", 1000, HALF)))  # offset 0, held
        await h.marks(500)  # offsets 1..3: done, but behind offset 0
        await h.settle()
        assert h.acked == [], "acks stay in offset order: nothing passes the held candidate"
        await h.marks(1001)
        await h.settle()
        assert h.acked == list(range(h.offset))

    run(body)


def test_a_rebalance_drops_what_is_held_unacked() -> None:
    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        h.quota.forget_partitions()
        await h.marks(2000)
        await h.settle()
        assert h.out == [] and 0 not in h.acked, "the new owner re-reads it from the committed offset"

    run(body)


class Stalled:
    """A send that waits, once armed, until it is let go: a producer's full queue or the ack
    batches' bound, the awaits a rebalance can come in."""

    def __init__(self) -> None:
        self.armed = False
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    def wrap(self, send: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def stalled(*args: Any) -> Any:
            if self.armed:
                self.armed = False
                self.waiting.set()
                await self.go.wait()
            return await send(*args)

        return stalled


@pytest.mark.parametrize("rebalance", ["begun", "revoked"])
def test_a_rebalance_while_a_decision_is_sent_decides_nothing_more(rebalance: str) -> None:
    """A rebalance that comes while a decision's send waits: the hand-over record and the commit
    are taken meanwhile, so the candidates after it are decided by the next owner; deciding them
    here too published them twice and wrote their quota after the hand-over."""

    async def body(h: Harness) -> None:
        flowing = [True]
        h.quota.flowing = lambda: flowing[0]
        stall = Stalled()
        h.quota.sender._send = stall.wrap(h.quota.sender._send)  # noqa: SLF001 - the send under test
        for order_no, event_ms in (("A", 1000), ("B", 1100), ("C", 1200)):
            await h.feed(encode_candidate(timed(order_no, event_ms, 100)))
        await h.marks(2000, range(SOURCES - 1))
        stall.armed = True
        last = asyncio.ensure_future(h.marks(2000, range(SOURCES - 1, SOURCES)))  # releases all three
        await stall.waiting.wait()  # A's declaration is being sent
        if rebalance == "begun":
            flowing[0] = False  # Faust suspends its flow first
        else:
            h.quota.forget_partitions()
        stall.go.set()
        await last
        await h.settle()
        assert [d["orderNo"] for d in h.out] == ["A"], "B and C are the next owner's to decide"
        (state,) = (decode_quota(raw) for raw in cast("dict[bytes, bytes]", h.quota.quotas).values())
        assert sorted(state.verdicts) == [h.out[0]["declarationId"]], "only A's verdict is in the buyer's state"
        assert sum(state.used.values()) == 100, "only A counts toward the quota"
        assert h.acked == [], "nothing acked: every candidate is read again"

    run(body)


def test_a_repeat_after_the_decision_gets_the_same_verdict() -> None:
    async def body(h: Harness) -> None:
        first, second = timed("A", 1000, HALF), timed("B", 2000, HALF)
        for c in (first, second):
            await h.feed(encode_candidate(c))
        await h.marks(3000)
        await h.feed(encode_candidate(first))  # at-least-once between the stages
        await h.feed(encode_candidate(second))
        assert h.verdicts() == [("A", False), ("B", True), ("A", False), ("B", True)]

    run(body)


@pytest.mark.parametrize("value", [b'{"watermark": "x", "source": 0}', b'{"watermark": 1}'])
def test_a_bad_watermark_is_dead_lettered_and_acked(value: bytes) -> None:
    async def body(h: Harness) -> None:
        await h.feed(value)
        await h.settle()
        assert h.acked == [0] and h.out == []

    run(body)


def test_without_sources_every_candidate_is_decided_on_arrival() -> None:
    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("B", 2000, HALF)))
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        assert h.verdicts() == [("B", False), ("A", True)]

    run(body, sources=None)


def test_two_halves_exceed_the_limit() -> None:
    assert 2 * HALF > LIMIT >= HALF


def test_an_idle_join_partition_holds_no_one_back() -> None:
    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        await h.marks(2000, range(SOURCES - 1))
        await h.feed(encode_watermark(10, SOURCES - 1, idle=False))
        assert h.out == [], "the last join partition is behind and not idle"
        await h.feed(encode_watermark(10, SOURCES - 1, idle=True))
        assert h.verdicts() == [("A", False)], "an idle partition is left out of the minimum"
        await h.feed(encode_watermark(20, SOURCES - 1, idle=False))  # input again: it counts again
        await h.feed(encode_candidate(timed("B", 1500, HALF)))
        assert h.quota.held == 1

    run(body)


def test_when_every_join_partition_is_idle_everything_held_is_decided() -> None:
    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("B", 2000, HALF)))
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        for source in range(SOURCES):
            await h.feed(encode_watermark(0, source, idle=True))
        assert h.verdicts() == [("A", False), ("B", True)]

    run(body)


def test_one_record_carries_the_watermarks_of_several_join_partitions() -> None:
    """A worker publishes its partitions' event times in one record (`encode_watermarks`);
    records of one partition each (written before) are still read, and the two mix."""

    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(timed("A", 1000, HALF)))
        await h.feed(encode_watermarks([(2000, 0, False), (2000, 1, False)]))
        assert h.out == [], "partition 2 has not said where it is"
        await h.feed(encode_watermark(1500, 2))
        await h.settle()
        assert h.verdicts() == [("A", False)]
        await h.feed(encode_candidate(timed("B", 1600, HALF)))
        await h.feed(encode_watermarks([(3000, 2, False), (900, 1, True)]))  # 1 idle: left out of the minimum
        await h.settle()
        assert h.verdicts() == [("A", False), ("B", True)]
        assert h.quota.partitions[0].watermarks == {0: (2000, False), 1: (2000, True), 2: (3000, False)}

    run(body)


@pytest.mark.parametrize(
    "value",
    [b'{"watermark": [[0, 1000]]}', b'{"watermark": [[0, "1000", false]]}', b'{"watermark": [7]}'],
)
def test_a_corrupt_combined_watermark_is_dead_lettered_and_acked(value: bytes) -> None:
    async def body(h: Harness) -> None:
        await h.feed(value)
        await h.settle()
        assert h.out == [] and h.quota.partitions[0].watermarks == {} and h.acked == [0]

    run(body)


def test_a_record_of_many_candidates_is_decided_in_order_and_acked_with_its_last() -> None:
    """agents/batch.py: the join sends its candidates for one partition in one record. Each is
    held or decided on its own; the record is acked once the last of them is decided."""

    async def body(h: Harness) -> None:
        await h.marks(1500)
        late, b, a = timed("LATE", 1000, 100), timed("B", 2000, HALF), timed("A", 2000, HALF)
        await h.feed(encode_candidates([encode_candidate(c) for c in (b, late, a)]))
        assert h.verdicts() == [("LATE", False)], "below the watermark: decided at once"
        assert h.quota.held == 2
        await h.feed(encode_candidate(timed("C", 1800, 100)))  # a record of one, after it
        await h.settle()
        assert h.acked == [0, 1, 2], "the watermarks only: the record waits for its held candidates"
        await h.marks(1900)
        await h.settle()
        assert h.verdicts() == [("LATE", False), ("C", False)]
        assert h.acked == [0, 1, 2], "C is decided, but its ack waits behind the record's"
        await h.marks(2001)
        await h.settle()
        assert h.verdicts() == [("LATE", False), ("C", False), ("A", False), ("B", True)]
        assert h.acked == list(range(h.offset)) and h.quota.held == 0

    run(body)


@pytest.mark.parametrize("broken", ["framing", "one candidate"])
def test_a_corrupt_record_of_candidates_is_dead_lettered_whole(broken: str) -> None:
    """None of its candidates is decided (each message ends up in one place: the dead letters,
    with its original bytes)."""

    async def body(h: Harness) -> None:
        good = encode_candidate(timed("A", 1000, 100))
        value = encode_candidates([good, good])[:-1] if broken == "framing" else encode_candidates([good, b"[1, 2]"])
        await h.marks(5000)
        await h.feed(value)
        await h.settle()
        assert h.out == [] and h.quota.held == 0
        (dead,) = h.dead
        assert base64.b64decode(dead["value"]) == value and dead["error"] == "INTERNAL_ERROR"
        assert h.acked == list(range(h.offset))

    run(body)


def test_a_candidate_whose_decision_fails_is_dead_lettered_and_the_others_of_its_record_go_on() -> None:
    class FailsOnce(dict[bytes, bytes]):
        failed = False

        def get(self, key: bytes, default: Any = None) -> Any:
            if not self.failed and not key.startswith(b"\x00"):  # a buyer's, not the hand-over record's
                self.failed = True
                raise RuntimeError("a bug")
            return super().get(key, default)

    async def body(h: Harness) -> None:
        h.quota.quotas = FailsOnce()
        await h.marks(5000)
        value = encode_candidates([encode_candidate(timed(n, 1000, 100)) for n in ("A", "B", "C")])
        await h.feed(value)
        await h.settle()
        assert h.verdicts() == [("B", False), ("C", False)]
        (dead,) = h.dead
        assert dead["error"] == "INTERNAL_ERROR" and base64.b64decode(dead["value"]) == value
        assert h.acked == list(range(h.offset))

    run(body)
