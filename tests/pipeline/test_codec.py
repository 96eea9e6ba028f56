"""pipeline.codec: state, candidate and quota round trips; published declarations and dead letters; garbage."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from pipeline.codec import (
    CANDIDATES_PREFIX,
    WATERMARK_PREFIX,
    dead_letter_dict,
    declaration_dict,
    decode_candidate,
    decode_quota,
    decode_state,
    decode_watermarks,
    encode_candidate,
    encode_candidates,
    encode_declaration,
    encode_quota,
    encode_state,
    encode_watermark,
    encode_watermarks,
    split_candidates,
)
from pipeline.config import HOUR_MS
from pipeline.decisions import decide_after, decide_incomplete
from pipeline.engine import Origin
from pipeline.errors import StateCodecError
from pipeline.join import Candidate, JoinState, expire, step
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.quota import BuyerQuota, apply_quota
from pipeline.records import Declaration, Document, OrderId
from pipeline.timeconv import iso_cst, iso_utc_ms
from tests.fixtures import docs
from tests.pipeline.helpers import CONFIG

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(loaded)
    return loaded


DECLARATION_SCHEMA = schema("declaration")
DECLARATION = Draft202012Validator(DECLARATION_SCHEMA)
DEADLETTER = Draft202012Validator(schema("deadletter"))

ORDER = parse_order(docs.raw(docs.order()))
PAYMENT = parse_payment(docs.raw(docs.payment()))
WAYBILL = parse_waybill(docs.raw(docs.waybill()))
# Variants: no optional payment references, fractional qty and weight, a withdrawal.
ORDER_BARE = parse_order(
    docs.raw(
        {
            k: v
            for k, v in docs.order(
                app_time="20261111000006",
                appType=2,
                items=[{"gnum": 1, "itemName": "x", "gcode": "3304990000", "qty": 1.25, "price": 1, "totalPrice": 1}],
            ).items()
            if k not in {"payCode", "payTransactionId"}
        }
    )
)
WAYBILL_ODD = parse_waybill(docs.raw(docs.waybill(app_time="20261111000400", appType=2, weight=0.125)))
WAYBILL_DELETE = parse_waybill(docs.raw(docs.waybill(app_time="20261111000500", appType=3, guid=docs.guid("w-del"))))
PAYMENT_BAD = parse_payment(docs.raw(docs.payment(amountPaid="1.00")))


def run(*documents: Document, event_ms: int | None = None) -> tuple[JoinState | None, list[Candidate | Declaration]]:
    state: JoinState | None = None
    emits: list[Candidate | Declaration] = []
    for d in documents:
        result = step(state, d, CONFIG, event_ms if event_ms is not None else d.app_time_ms, 1)
        state = result.state
        emits += result.emit
    return state, emits


def state_of(*documents: Document) -> JoinState:
    state, _ = run(*documents)
    assert state is not None
    return state


def expired(state: JoinState) -> JoinState:
    closed = expire(state, CONFIG, 5).state
    assert closed is not None
    return closed


def candidate(*documents: Document) -> Candidate:
    _, emits = run(*documents)
    (only,) = emits
    assert isinstance(only, Candidate)
    return only


STATES: dict[str, JoinState] = {
    "order": state_of(ORDER),
    "payment": state_of(PAYMENT),
    "waybill": state_of(WAYBILL),
    "order+payment": state_of(ORDER, PAYMENT),
    "payment+waybill": state_of(WAYBILL, PAYMENT),
    "bare order, odd waybill": state_of(ORDER_BARE, WAYBILL_ODD),
    "withdrawn waybill": state_of(ORDER, WAYBILL, WAYBILL_DELETE),
    "replaced order": state_of(ORDER, ORDER_BARE),
    "decided complete": state_of(ORDER, PAYMENT, WAYBILL),
    "decided incomplete": expired(state_of(PAYMENT, WAYBILL)),
    "after decision": state_of(ORDER, PAYMENT, WAYBILL, WAYBILL_ODD),
    "empty open": JoinState(OrderId("X"), 0),
}


@pytest.mark.parametrize("name", list(STATES))
def test_state_round_trip(name: str) -> None:
    state = STATES[name]
    raw = encode_state(state)
    back = decode_state(raw)
    assert back == state
    assert (back.is_open, back.docs, back.guids, back.decided) == (
        state.is_open,
        state.docs,
        state.guids,
        state.decided,
    )
    assert type(back.guids) is tuple
    if back.order is not None:
        assert type(back.order.items) is tuple and all(type(i.qty) is Decimal for i in back.order.items)
        assert back.order.kind == "order"
    if back.waybill is not None:
        assert type(back.waybill.weight) is Decimal and back.waybill.kind == "waybill"
    if back.payment is not None:
        assert back.payment.kind == "payment"
    assert encode_state(back) == raw  # stable bytes


def _row_by_name(record: Any, text: tuple[str, ...] = ()) -> list[Any]:
    """A record's stored row, field by field by name: every field but `kind`, in order; `text` as strings."""
    return [str(getattr(record, f)) if f in text else getattr(record, f) for f in record._fields if f != "kind"]


@pytest.mark.parametrize("name", list(STATES))
def test_state_layout_is_the_stored_format(name: str) -> None:
    """The bytes workers already stored: [1, orderNo, deadline, decided, guids, order, payment,
    waybill], each record a row by field name, an item's qty and a waybill's weight as text."""
    state = STATES[name]
    order = state.order
    expected = [
        1,
        state.order_no,
        state.deadline_ms,
        state.decided,
        list(state.guids),
        None if order is None else [*_row_by_name(order)[:-1], [_row_by_name(i, ("qty",)) for i in order.items]],
        None if state.payment is None else _row_by_name(state.payment),
        None if state.waybill is None else _row_by_name(state.waybill, ("weight",)),
    ]
    assert orjson.loads(encode_state(state)) == expected


def test_the_states_are_what_their_names_say() -> None:
    assert STATES["decided complete"].decided and STATES["decided complete"].docs == (None, None, None)
    assert STATES["decided incomplete"].decided and not STATES["decided incomplete"].is_open
    assert len(STATES["after decision"].guids) == 4
    assert STATES["withdrawn waybill"].waybill is None and len(STATES["withdrawn waybill"].guids) == 3
    bare, odd = STATES["bare order, odd waybill"].order, STATES["bare order, odd waybill"].waybill
    assert bare is not None and bare.pay_code is None and bare.items[0].qty == Decimal("1.25")
    assert odd is not None and odd.weight == Decimal("0.125")
    assert bare.items[0].item_no is None and bare.items[0].unit is None and bare.items[0].country is None


CANDIDATES: dict[str, Candidate] = {
    "clean": candidate(ORDER, PAYMENT, WAYBILL),
    "flagged": candidate(ORDER, PAYMENT_BAD, WAYBILL),
    "inspected": candidate(ORDER, PAYMENT, WAYBILL)._replace(
        declaration=candidate(ORDER, PAYMENT, WAYBILL).declaration._replace(status="INSPECTION", inspection=True)
    ),
    "nulls": Candidate(
        decide_incomplete(OrderId("N"), (None, None, None), 0, 0)._replace(reasons=(), status="RELEASED"), "", 1970
    ),
}


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_candidate_round_trip(name: str) -> None:
    c = CANDIDATES[name]
    back = decode_candidate(encode_candidate(c))
    assert back == c
    assert type(back.declaration.reasons) is tuple and back.declaration.documents == c.declaration.documents


@pytest.mark.parametrize("count", [1, 2, 5])
def test_a_record_of_candidates_is_json_and_splits_into_their_bytes(count: int) -> None:
    """One candidate's text with a line break and a quote in it: orjson escapes them, so the
    framing (one candidate per line) holds."""
    tricky = CANDIDATES["clean"]
    tricky = tricky._replace(declaration=tricky.declaration._replace(reasons=("A\nB", 'C"],\n[D')))
    values = [encode_candidate(c) for c in [*CANDIDATES.values(), tricky][:count]]
    raw = encode_candidates(values)
    assert raw.startswith(CANDIDATES_PREFIX) and not raw.startswith(WATERMARK_PREFIX)
    assert orjson.loads(raw) == {"candidates": [orjson.loads(v) for v in values]}
    assert split_candidates(raw) == values
    assert [decode_candidate(v) for v in split_candidates(encode_candidates([encode_candidate(tricky)]))] == [tricky]


@pytest.mark.parametrize(
    "raw",
    [
        CANDIDATES_PREFIX + b"[1]\n]",  # cut short
        CANDIDATES_PREFIX + b"[1]\n[2]\n]}",  # a separator missing
        CANDIDATES_PREFIX + b"[1],\n\n]}",  # an empty line
        CANDIDATES_PREFIX + b"\n]}",  # none at all
        b'{"candidates": [[1]]}',  # JSON, but not framed by encode_candidates
    ],
)
def test_a_record_of_candidates_not_framed_as_written_is_corrupt(raw: bytes) -> None:
    with pytest.raises(StateCodecError, match="corrupt candidates record"):
        split_candidates(raw)


def test_the_flagged_candidate_has_reasons() -> None:
    assert CANDIDATES["flagged"].declaration.reasons and not CANDIDATES["clean"].declaration.reasons


@pytest.mark.parametrize(
    "quota",
    [
        BuyerQuota({}, {}),
        BuyerQuota({2026: 31000}, {"a" * 32: (1_790_000_000_000, False)}),
        BuyerQuota({2025: 1, 2026: 2_600_000}, {"x": (0, True), "y": (-5, False), "z": (2**52, True)}),
        apply_quota(None, CANDIDATES["clean"], CONFIG).state,
        apply_quota(None, CANDIDATES["clean"], replace(CONFIG, annual_limit_fen=1)).state,
    ],
)
def test_quota_round_trip(quota: BuyerQuota) -> None:
    back = decode_quota(encode_quota(quota))
    assert back == quota
    assert all(type(y) is int and type(f) is int for y, f in back.used.items())
    assert all(type(e) is bool for _, e in back.verdicts.values())


def _quota_exceeded() -> Declaration:
    return apply_quota(None, CANDIDATES["clean"], replace(CONFIG, annual_limit_fen=1)).declaration


DECLARATIONS: dict[str, Declaration] = {
    "released": CANDIDATES["clean"].declaration._replace(status="RELEASED", inspection=False),
    "inspection": CANDIDATES["inspected"].declaration,
    "review": CANDIDATES["flagged"].declaration,
    "quota exceeded": _quota_exceeded(),
    "missing two": decide_incomplete(OrderId("TM1"), (None, PAYMENT, None), ORDER.app_time_ms + 24 * HOUR_MS, 123),
    "missing all": decide_incomplete(OrderId("TM1"), (None, None, None), 0, 0),
    "after decision": decide_after(WAYBILL_ODD, 1_800_000_000_999),
}


@pytest.mark.parametrize("name", list(DECLARATIONS))
def test_encoded_declaration_is_the_published_json(name: str) -> None:
    d = DECLARATIONS[name]
    published = orjson.loads(encode_declaration(d))
    assert published == declaration_dict(d)
    optional = {"receivedAt"}  # absent: these declarations have no receipt time
    assert set(published) == set(DECLARATION_SCHEMA["required"]) == set(DECLARATION_SCHEMA["properties"]) - optional
    errors = [e.message for e in DECLARATION.iter_errors(published)]
    assert errors == []
    assert published["declarationId"] == d.declaration_id and published["orderNo"] == d.order_no
    assert (published["status"], published["returnStatus"]) == (d.status, d.return_status)
    assert published["reasons"] == list(d.reasons) and published["inspection"] is d.inspection
    assert published["documents"] == d.documents
    assert published["eventTime"] == iso_cst(d.event_time_ms) and published["decidedAt"] == iso_utc_ms(d.decided_at_ms)


@pytest.mark.parametrize(
    ("fen", "text"),
    [(None, None), (0, "0.00"), (5, "0.05"), (31000, "310.00"), (2821, "28.21"), (123456789, "1234567.89")],
)
def test_declaration_money_is_yuan_with_two_decimals(fen: int | None, text: str | None) -> None:
    d = DECLARATIONS["released"]._replace(dutiable_value=fen, tax=fen)
    published = orjson.loads(encode_declaration(d))
    assert (published["dutiableValue"], published["tax"]) == (text, text)


def test_declaration_times() -> None:
    d = DECLARATIONS["released"]
    published = orjson.loads(encode_declaration(d._replace(event_time_ms=ORDER.app_time_ms, decided_at_ms=5)))
    assert published["eventTime"] == "2026-11-11T00:00:05+08:00"
    assert published["decidedAt"] == "1970-01-01T00:00:00.005Z"


@pytest.mark.parametrize(
    ("raw", "origin", "reason", "field", "internal", "key", "error"),
    [
        (b'{"a":1}', Origin("clearance.orders", 0, 0), "orderNo: required", "orderNo", False, None, "INVALID_RECORD"),
        (b"", Origin("clearance.payments", 3, 17, b"TM1"), "not valid JSON", None, False, "TM1", "INVALID_RECORD"),
        (
            b"\x00\xff\xfe binary \n",
            Origin("clearance.waybills", 11, 2**40, b"\xffk"),
            "internal error: KeyError",
            None,
            True,
            "\ufffdk",
            "INTERNAL_ERROR",
        ),
        (
            docs.raw(docs.order()),
            Origin("t", 0, 5, "订单".encode()),
            "x",
            "items[0].qty",
            False,
            "订单",
            "INVALID_RECORD",
        ),
    ],
)
def test_dead_letter_dict(
    raw: bytes, origin: Origin, reason: str, field: str | None, internal: bool, key: str | None, error: str
) -> None:
    record = dead_letter_dict(raw, origin, reason, field, internal=internal, wall_ms=1_790_000_000_123)
    assert record == {
        "sourceTopic": origin.topic,
        "sourcePartition": origin.partition,
        "sourceOffset": origin.offset,
        "key": key,
        "value": base64.b64encode(raw).decode("ascii"),
        "reason": reason,
        "field": field,
        "error": error,
        "deadLetteredAt": iso_utc_ms(1_790_000_000_123),
    }
    assert base64.b64decode(record["value"], validate=True) == raw  # the original bytes, exactly
    assert [e.message for e in DEADLETTER.iter_errors(orjson.loads(orjson.dumps(record)))] == []


GOOD_STATE = encode_state(STATES["order+payment"])
GOOD_CANDIDATE = encode_candidate(CANDIDATES["clean"])
GOOD_QUOTA = encode_quota(BuyerQuota({2026: 1}, {"d": (1, False)}))

Decoder = Callable[[bytes], Any]


def garbage(name: str, decoder: Decoder, raw: bytes, bug: type[Exception] | None = None) -> Any:
    """A corrupt input; `bug` names the exception decode_state used to let escape (a dict or a
    short row: LookupError; a bad quantity: decimal.InvalidOperation) before it was fixed."""
    return pytest.param(decoder, raw, id=f"{decoder.__name__}-{name}")


def rows(value: list[Any]) -> bytes:
    return orjson.dumps(value)


S: list[Any] = orjson.loads(GOOD_STATE)  # [v, order_no, deadline, decided, guids, order, payment, waybill]
C: list[Any] = orjson.loads(GOOD_CANDIDATE)
BAD_QTY_ITEM = [1, None, "n", "g", "abc", None, 1, 1, None]

GARBAGE = [
    *[
        garbage(name, decoder, raw)
        for decoder in (decode_state, decode_quota, decode_candidate)
        for name, raw in {
            "empty": b"",
            "text": b"not json",
            "not-utf8": b"\xff\xfe\x00",
            "null": b"null",
            "number": b"5",
            "string": b'"text"',
            "empty-list": b"[]",
            "empty-object": b"{}",
            "one": b"[1]",
            "too-long": rows(list(range(16))),
        }.items()
    ],
    garbage("truncated", decode_state, GOOD_STATE[:-1]),
    garbage("trailing", decode_state, GOOD_STATE + b"x"),
    garbage("version-2", decode_state, rows([2, *S[1:]])),
    garbage("version-text", decode_state, rows(["1", *S[1:]])),
    garbage("guids-number", decode_state, rows([*S[:4], 5, *S[5:]])),
    garbage("order-short", decode_state, rows([*S[:5], ["short"], *S[6:]])),
    garbage("payment-short", decode_state, rows([*S[:6], [1, 2], S[7]])),
    garbage("waybill-short", decode_state, rows([*S[:7], [1, 2]]), bug=IndexError),
    garbage("order-dict", decode_state, rows([*S[:5], {"a": 1}, *S[6:]]), bug=KeyError),
    garbage("waybill-dict", decode_state, rows([*S[:7], {"a": 1}]), bug=KeyError),
    garbage("bad-qty", decode_state, rows([*S[:5], [*S[5][:-1], [BAD_QTY_ITEM]], *S[6:]]), bug=ArithmeticError),
    garbage("truncated", decode_quota, GOOD_QUOTA[:-2]),
    garbage("version-2", decode_quota, rows([2, [], []])),
    garbage("year-text", decode_quota, rows([1, [["x", 1]], []])),
    garbage("used-number", decode_quota, rows([1, [5], []])),
    garbage("verdict-short", decode_quota, rows([1, [], [["d", 1]]])),
    garbage("verdict-unhashable", decode_quota, rows([1, [], [[["d"], 1, True]]])),
    garbage("truncated", decode_candidate, GOOD_CANDIDATE[:-1]),
    garbage("codes-short", decode_candidate, rows([*C[:4], [1, 2], *C[5:]])),
    garbage("fields-short", decode_candidate, rows(C[:-2])),  # C[:-1] is the form before receivedAt
]


@pytest.mark.parametrize(("decoder", "raw"), GARBAGE)
def test_garbage_raises_state_codec_error(decoder: Decoder, raw: bytes) -> None:
    with pytest.raises(StateCodecError):
        decoder(raw)


def test_good_bytes_decode() -> None:  # the garbage above is garbage because of the change, not the base
    assert decode_state(GOOD_STATE) == STATES["order+payment"]
    assert decode_quota(GOOD_QUOTA) == BuyerQuota({2026: 1}, {"d": (1, False)})
    assert decode_candidate(GOOD_CANDIDATE) == CANDIDATES["clean"]


def test_received_at_is_published_only_when_known() -> None:
    d = DECLARATIONS["released"]
    assert "receivedAt" not in orjson.loads(encode_declaration(d))
    published = orjson.loads(encode_declaration(d._replace(received_at_ms=1_800_000_000_007)))
    assert published["receivedAt"] == "2027-01-15T08:00:00.007Z"
    assert [e.message for e in DECLARATION.iter_errors(published)] == []


def test_candidate_carries_received_at_and_reads_the_old_form() -> None:
    c = CANDIDATES["clean"]
    timed = c._replace(declaration=c.declaration._replace(received_at_ms=1_800_000_000_007))
    assert decode_candidate(encode_candidate(timed)) == timed
    old = orjson.loads(encode_candidate(c))[:-1]  # written before receivedAt existed: 14 elements
    assert decode_candidate(orjson.dumps(old)) == c


_ODD_TEXT = "".join(chr(i) for i in range(0x80)) + "\u2028\u2029\u0085\ufeff中文 ＴＭ１\U0001f600"


@pytest.mark.parametrize("name", list(DECLARATIONS))
@pytest.mark.parametrize("received", [None, 1_800_000_000_123])
@pytest.mark.parametrize("text", ["TM1", _ODD_TEXT])
def test_encoded_declaration_is_orjson_of_the_dict_byte_for_byte(name: str, received: int | None, text: str) -> None:
    d = DECLARATIONS[name]._replace(received_at_ms=received, ebc_code=text, buyer_id_number=text)
    assert encode_declaration(d) == orjson.dumps(declaration_dict(d))


def test_watermarks_of_several_join_partitions_in_one_record() -> None:
    marks = [(1_700_000_000_000, 0, False), (1_700_000_000_500, 7, True)]
    raw = encode_watermarks(marks)
    assert raw.startswith(WATERMARK_PREFIX)  # what the quota stage tells watermarks from candidates by
    assert orjson.loads(raw) == {"watermark": [[0, 1_700_000_000_000, False], [7, 1_700_000_000_500, True]]}
    assert decode_watermarks(raw) == marks
    assert decode_watermarks(encode_watermark(5, 3, idle=True)) == [(5, 3, True)]  # the form written before
    assert decode_watermarks(encode_watermarks([])) == []
    for corrupt in (b"[1, 2]", b'{"watermark": [[1, 2]]}', b'{"watermark": [[1, 2, 0]]}', b'{"watermark": "x"}', b"{"):
        with pytest.raises(StateCodecError):
            decode_watermarks(corrupt)


@pytest.mark.parametrize("ms", [0, 5, 45, 999, 1_790_000_000_000, 1_790_000_000_007, 1_790_000_000_123])
def test_utc_times_carry_three_digits_of_milliseconds(ms: int) -> None:
    expected = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_utc_ms(ms) == expected
