"""The quota agent's logic (agents.quota.QuotaProcessor) on fakes: a dict for the buyer table,
a recording send function and a real Delivery; candidates are built by the real join core.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import pytest

from agents.acks import Delivery
from agents.metrics import Metrics
from agents.quota import QuotaProcessor
from agents.sender import Dest, Headers, Msg, Sender, Table
from clearance.settings import DEFAULT_POSITIVE_LIST, load_positive_list
from pipeline.codec import decode_quota, encode_candidate, encode_declaration
from pipeline.config import RulesConfig
from pipeline.join import Candidate, JoinState, step
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.records import Document
from tests.fixtures.docs import BUYER_ID, order, payment, raw, waybill

CONFIG = RulesConfig(positive_list=load_positive_list(DEFAULT_POSITIVE_LIST), inspection_rate=0.0)
TOPICS: dict[Dest, str] = {"matched": "out.matched", "flagged": "out.flagged", "candidates": "out.candidates"}
DLQ = "out.deadletter"
IN_TOPIC = "candidates"
BUYER = BUYER_ID.encode()


def candidate(order_no: str, **waybill_over: Any) -> Candidate:
    """The candidate the join core makes of a clean order, payment and waybill (`waybill_over`
    changes the waybill, e.g. freight="99.00" for a FREIGHT_MISMATCH)."""
    docs: list[Document] = [
        parse_order(raw(order(order_no))),
        parse_payment(raw(payment(order_no))),
        parse_waybill(raw(waybill(order_no, **waybill_over))),
    ]
    state: JoinState | None = None
    emitted: tuple[Any, ...] = ()
    for doc in docs:
        state, emitted, _ = step(state, doc, CONFIG, doc.app_time_ms, 1_000)
    (made,) = emitted
    assert isinstance(made, Candidate)
    return made


class Harness:
    """A QuotaProcessor over a table, a recording send and a Delivery."""

    def __init__(self, table: Table | None = None, config: RulesConfig = CONFIG) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, Headers | None]] = []
        self.acked: list[int] = []
        self.offset = 0
        self.dict_table: dict[bytes, bytes] = {}
        self.metrics = Metrics()
        self.delivery = Delivery(max_acks=1)
        loop = asyncio.get_running_loop()

        async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any]:
            self.sent.append((topic, key, value, headers))
            future: asyncio.Future[None] = loop.create_future()
            future.set_result(None)
            return future

        sender = Sender(send, TOPICS, DLQ, self.metrics, self.delivery)
        self.quota = QuotaProcessor(config, quotas=self.dict_table if table is None else table, sender=sender)

    async def feed(self, value: bytes, key: bytes | None = BUYER) -> Msg:
        msg = Msg(IN_TOPIC, 2, self.offset, key, value)
        self.offset += 1
        await self.quota.handle(msg, self._ack(msg.offset))
        return msg

    def _ack(self, offset: int) -> Callable[[], None]:
        return lambda: self.acked.append(offset)

    async def settle(self) -> None:
        await self.delivery.flush()
        assert self.delivery.settled()

    def since(self, start: int) -> list[tuple[str, bytes | None, bytes, Headers | None]]:
        return self.sent[start:]


def run(test: Callable[[Harness], Coroutine[Any, Any, None]], **harness: Any) -> None:
    async def main() -> None:
        await test(Harness(**harness))

    asyncio.run(asyncio.wait_for(main(), timeout=10))


@pytest.mark.parametrize(
    ("waybill_over", "topic", "status", "reasons"),
    [
        pytest.param({}, TOPICS["matched"], "RELEASED", [], id="clean-matched"),
        pytest.param({"freight": "99.00"}, TOPICS["flagged"], "REVIEW", ["FREIGHT_MISMATCH"], id="mismatch-flagged"),
    ],
)
def test_a_candidate_yields_one_declaration_on_the_topic_of_its_status(
    waybill_over: dict[str, Any], topic: str, status: str, reasons: list[str]
) -> None:
    cand = candidate("Q1", **waybill_over)

    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(cand))
        await h.settle()
        assert h.sent == [(topic, b"Q1", encode_declaration(cand.declaration), None)], "the draft, unchanged"
        published = orjson.loads(h.sent[0][2])
        assert (published["orderNo"], published["status"], published["reasons"]) == ("Q1", status, reasons)
        assert h.acked == [0]
        state = decode_quota(h.dict_table[BUYER])
        counted = cand.declaration.dutiable_value if status == "RELEASED" else 0
        assert state.used.get(cand.year, 0) == counted, "only RELEASED/INSPECTION count"
        assert list(state.verdicts) == [cand.declaration.declaration_id]

    run(body)


def test_a_candidate_delivered_twice_yields_the_same_bytes_and_counts_once() -> None:
    cand = candidate("Q1")
    value = encode_candidate(cand)

    async def body(h: Harness) -> None:
        await h.feed(value)
        table_after_first = dict(h.dict_table)
        await h.feed(value)
        await h.settle()
        first, again = h.sent
        assert first == again and first[0] == TOPICS["matched"]
        assert h.dict_table == table_after_first, "a repeat changes nothing in the table"
        state = decode_quota(h.dict_table[BUYER])
        assert state.used == {cand.year: cand.declaration.dutiable_value}
        assert len(state.verdicts) == 1
        assert h.acked == [0, 1]

    run(body)


def test_the_candidate_that_exceeds_the_annual_limit_is_rejected_and_stays_so_when_repeated() -> None:
    cands = [candidate(f"Q{n}") for n in range(3)]
    dutiable = cands[0].declaration.dutiable_value
    assert dutiable is not None and all(c.declaration.dutiable_value == dutiable for c in cands)
    config = RulesConfig(
        positive_list=CONFIG.positive_list, inspection_rate=0.0, annual_limit_fen=2 * dutiable
    )  # room for exactly two

    async def body(h: Harness) -> None:
        for cand in cands:
            await h.feed(encode_candidate(cand))
        await h.feed(encode_candidate(cands[2]))  # the rejected one again
        await h.feed(encode_candidate(cands[0]))  # an accepted one again
        await h.settle()
        out = [(topic, orjson.loads(value)) for topic, _, value, _ in h.sent]
        assert [(t, d["orderNo"], d["status"], d["reasons"]) for t, d in out] == [
            (TOPICS["matched"], "Q0", "RELEASED", []),
            (TOPICS["matched"], "Q1", "RELEASED", []),
            (TOPICS["flagged"], "Q2", "REJECTED", ["ANNUAL_QUOTA_EXCEEDED"]),
            (TOPICS["flagged"], "Q2", "REJECTED", ["ANNUAL_QUOTA_EXCEEDED"]),
            (TOPICS["matched"], "Q0", "RELEASED", []),
        ]
        assert h.sent[2] == h.sent[3] and h.sent[0] == h.sent[4]
        state = decode_quota(h.dict_table[BUYER])
        assert state.used == {2026: 2 * dutiable}, "a rejected declaration does not count"
        assert h.acked == [0, 1, 2, 3, 4]

    run(body, config=config)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"{}", id="an-object"),
        pytest.param(b"[1, 2, 3]", id="too-short"),
        pytest.param(b"", id="empty"),
    ],
)
def test_an_undecodable_candidate_is_dead_lettered_and_acked(value: bytes) -> None:
    async def body(h: Harness) -> None:
        msg = await h.feed(value, key=b"some-buyer")
        await h.settle()
        ((topic, key, record_bytes, headers),) = h.sent
        record = orjson.loads(record_bytes)
        assert (topic, key) == (DLQ, b"some-buyer")
        assert base64.b64decode(record["value"]) == value, "the original bytes"
        assert record["reason"].startswith("corrupt candidate")
        assert (record["sourceTopic"], record["sourcePartition"], record["sourceOffset"]) == (IN_TOPIC, 2, 0)
        assert headers is not None and dict(headers)["dlq.reason"] == record["reason"].encode()
        assert dict(headers)["dlq.offset"] == str(msg.offset).encode()
        assert h.dict_table == {}
        assert h.acked == [0]

    run(body)


class GetFailsOnce:
    """A table whose first `get` of a buyer raises (a bug, a broken store), then works like a
    dict (the hand-over record's key, read first, starts with a NUL: agents.quota.handover_key)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.failed = False

    def get(self, key: bytes, /) -> bytes | None:
        if not self.failed and not key.startswith(b"\x00"):
            self.failed = True
            raise KeyError(key)  # the message would hold the buyer id: it must not be logged
        return self.data.get(key)

    def __setitem__(self, key: bytes, value: bytes, /) -> None:
        self.data[key] = value

    def __delitem__(self, key: bytes, /) -> None:
        del self.data[key]


def test_a_bug_inside_is_dead_lettered_as_internal_and_the_processor_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    table = GetFailsOnce()
    first, second = candidate("Q1"), candidate("Q2")

    async def body(h: Harness) -> None:
        await h.feed(encode_candidate(first))
        await h.feed(encode_candidate(second))
        await h.settle()
        (dead, declared) = h.sent
        record = orjson.loads(dead[2])
        assert dead[0] == DLQ
        assert (record["error"], record["reason"]) == ("INTERNAL_ERROR", "internal error: KeyError")
        assert base64.b64decode(record["value"]) == encode_candidate(first)
        assert declared[:2] == (TOPICS["matched"], b"Q2")
        assert decode_quota(table.data[BUYER]).used == {2026: second.declaration.dutiable_value}
        assert h.metrics.counts[("internal_errors", "")] == 1
        assert h.acked == [0, 1]

    with caplog.at_level(logging.ERROR, logger="clearance.worker"):
        run(body, table=table)
    assert "internal error in quota" in caplog.text
    assert BUYER_ID not in caplog.text, "no personal data in the log"


def test_every_message_is_acked_once_in_order() -> None:
    """A mixed stream: new, repeated, corrupt, flagged, a candidate with a state that is not ours."""
    a, b = candidate("Q1"), candidate("Q2", freight="99.00")

    async def body(h: Harness) -> None:
        h.dict_table[b"other-buyer"] = b"[999]"  # a corrupt quota state: an internal error
        alien = encode_candidate(a._replace(buyer_key="other-buyer"))
        stream = [encode_candidate(a), encode_candidate(a), b"\xff", encode_candidate(b), alien, encode_candidate(b)]
        for value in stream:
            await h.feed(value)
            for _ in range(20):  # let the batch (sealed at once: max_acks=1) settle
                await asyncio.sleep(0)
            assert h.acked == list(range(h.offset)), "max_acks=1: released at once, never twice"
        await h.settle()
        assert h.acked == list(range(len(stream)))
        assert [topic for topic, *_ in h.sent] == [
            TOPICS["matched"],
            TOPICS["matched"],
            DLQ,
            TOPICS["flagged"],
            DLQ,
            TOPICS["flagged"],
        ]

    run(body)
