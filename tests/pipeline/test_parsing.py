"""The msgspec parser: readable reasons in our words, no personal data, exact conversions.

test_parser_agrees_with_schema.py proves what is accepted; this file pins how a
rejection reads and what an accepted document becomes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from pipeline import money
from pipeline.errors import InvalidRecord
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from tests.fixtures import docs

PARSERS = {"order": parse_order, "payment": parse_payment, "waybill": parse_waybill}
BUILDERS = {"order": docs.order, "payment": docs.payment, "waybill": docs.waybill}
MONEY_STRING = "money string must be yuan with at most 2 decimals, like 12.30"
PERSONAL = "张三丰 330106199001011234 13800138000 杭州市西湖区"


def _reject(kind: str, raw: bytes) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        PARSERS[kind](raw)
    return caught.value


def _changed(kind: str, **over: Any) -> bytes:
    return orjson.dumps({**BUILDERS[kind](), **over})


@pytest.mark.parametrize(
    ("kind", "over", "field", "reason"),
    [
        ("order", {"guid": "x" * 35}, "guid", "must be exactly 36 characters"),
        ("order", {"orderNo": "x" * 61}, "orderNo", "must be at most 60 characters"),
        ("order", {"orderNo": ""}, "orderNo", "must not be empty"),
        ("order", {"ebpCode": "x" * 11}, "ebpCode", "must be exactly 10 characters"),
        ("order", {"buyerName": ""}, "buyerName", "must not be empty"),
        ("order", {"buyerName": 5}, "buyerName", "must be a string, not number"),
        ("order", {"payCode": []}, "payCode", "must be a string or null, not array"),
        ("order", {"appType": 4}, "appType", "must be 1 (new), 2 (modify) or 3 (delete)"),
        ("order", {"appType": 2.5}, "appType", "must be 1 (new), 2 (modify) or 3 (delete)"),
        ("order", {"appType": True}, "appType", "must be 1 (new), 2 (modify) or 3 (delete)"),
        ("order", {"appTime": "20261131000000"}, "appTime", "must be a real time as YYYYMMDDhhmmss (CST)"),
        ("order", {"appTime": "2026111100000\n"}, "appTime", "must be a real time as YYYYMMDDhhmmss (CST)"),
        ("order", {"currency": "156"}, "currency", 'must be "142" (CNY): amounts are compared in CNY'),
        ("order", {"goodsValue": "1.234"}, "goodsValue", MONEY_STRING),
        ("order", {"goodsValue": "12\n"}, "goodsValue", MONEY_STRING),
        ("order", {"freight": 1.005}, "freight", "money has more than 2 decimals"),
        ("order", {"discount": -1}, "discount", "money out of range 0..999999999999.99"),
        ("order", {"taxTotal": 1e13}, "taxTotal", "money out of range 0..999999999999.99"),
        ("order", {"acturalPaid": None}, "acturalPaid", "money must be a number or a decimal string, not null"),
        ("order", {"items": {}}, "items", "must be an array, not object"),
        ("order", {"items": []}, "items", "must hold at least one item"),
        ("order", {"items": ["x"]}, "items[0]", "must be an object, not string"),
        ("payment", {"payTime": "20261111250000"}, "payTime", "must be a real time as YYYYMMDDhhmmss (CST)"),
        ("payment", {"amountPaid": False}, "amountPaid", "money must be a number or a decimal string, not boolean"),
        ("waybill", {"weight": "0.62kg"}, "weight", "must be a number, not string"),
        ("waybill", {"weight": -0.5}, "weight", "must be >= 0 and <= 1000000"),
        ("waybill", {"packNo": 0}, "packNo", "must be >= 1"),
        ("waybill", {"packNo": 1.5}, "packNo", "must be an integer, not a fraction"),
        ("waybill", {"packNo": "1"}, "packNo", "must be an integer, not string"),
    ],
)
def test_reason_in_our_words(kind: str, over: dict[str, Any], field: str, reason: str) -> None:
    err = _reject(kind, _changed(kind, **over))
    assert (err.field, err.reason) == (field, f"{field}: {reason}")


@pytest.mark.parametrize(
    ("item", "field", "reason"),
    [
        ({"qty": 0}, "items[1].qty", "must be > 0 and <= 1000000"),
        ({"qty": "2"}, "items[1].qty", "must be a number, not string"),
        ({"gnum": 2.5}, "items[1].gnum", "must be an integer, not a fraction"),
        ({"gcode": "１９０１９０００１０"}, "items[1].gcode", "must be a 10-digit HS code"),
        ({"gcode": "190190001"}, "items[1].gcode", "must be a 10-digit HS code"),
        ({"price": 0.001}, "items[1].price", "money has more than 2 decimals"),
        ({"totalPrice": "01"}, "items[1].totalPrice", MONEY_STRING),
        ({"itemName": None}, "items[1].itemName", "must be a string, not null"),
    ],
)
def test_item_reason_names_the_line(item: dict[str, Any], field: str, reason: str) -> None:
    order = docs.order()
    line = {**order["items"][0], "gnum": 2, **item}
    err = _reject("order", orjson.dumps({**order, "items": [order["items"][0], line]}))
    assert (err.field, err.reason) == (field, f"{field}: {reason}")


def test_missing_field_names_its_path() -> None:
    order = docs.order()
    line = {k: v for k, v in order["items"][0].items() if k != "itemName"}
    err = _reject("order", orjson.dumps({**order, "items": [line]}))
    assert (err.field, err.reason) == ("items[0].itemName", "items[0].itemName: required field is missing")
    payment = {k: v for k, v in docs.payment().items() if k != "payerName"}
    assert _reject("payment", orjson.dumps(payment)).field == "payerName"


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
@pytest.mark.parametrize("field", ["currency", "appType", "guid", "orderNo", "appTime", "buyerName", "freight"])
def test_reasons_never_quote_the_value(kind: str, field: str) -> None:
    # msgspec's own message quotes a bad enum value (`Invalid enum value '...'`): never passed on.
    for value in (PERSONAL, PERSONAL[:10], PERSONAL * 3, [PERSONAL], {"x": PERSONAL}):
        try:
            PARSERS[kind](_changed(kind, **{field: value}))
        except InvalidRecord as err:
            assert "张三丰" not in err.reason and "13800138000" not in err.reason and "杭州" not in err.reason


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_utf8_checked_in_unknown_fields_too(kind: str) -> None:
    # msgspec skips an unknown field without decoding it; the message must still be UTF-8.
    raw = _changed(kind, remark="ok")
    assert PARSERS[kind](raw)
    err = _reject(kind, raw.replace(b'"remark":"ok"', b'"remark":"o\xffk"'))
    assert err.field is None and err.reason == "not valid JSON (not UTF-8)"
    err = _reject(kind, raw.replace(b'"remark":"ok"', b'"rem\xc3":"ok"'))
    assert err.field is None


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":1,}', b'{"a" 1}', b'{"a":"\\ud800"}'])
def test_not_json(raw: bytes) -> None:
    err = _reject("order", raw)
    assert err.field is None and err.reason.startswith("not valid JSON (")


def test_not_an_object() -> None:
    assert _reject("payment", b"[1]").reason == "message must be a JSON object, not array"
    assert _reject("payment", b"12").reason == "message must be a JSON object, not number"


def test_duplicate_keys_every_occurrence_is_checked() -> None:
    # Documented in pipeline.parsing: stricter than a last-wins reading of the schema.
    raw = _changed("payment")
    assert _reject("payment", raw.replace(b'{"guid"', b'{"payerName":5,"guid"', 1)).field == "payerName"
    assert parse_payment(raw.replace(b'{"guid"', b'{"payerName":"x","guid"', 1))


def test_integral_floats_and_quantities() -> None:
    order = docs.order()
    lines = [{**order["items"][0], "gnum": 1.0, "qty": 2}, {**order["items"][0], "gnum": 2, "qty": 1.25}]
    parsed = parse_order(orjson.dumps({**order, "appType": 3.0, "items": lines}))
    assert parsed.app_type == 3 and type(parsed.app_type) is int
    assert [(i.gnum, type(i.gnum)) for i in parsed.items] == [(1, int), (2, int)]
    assert [(i.qty, type(i.qty)) for i in parsed.items] == [(2, int), (Decimal("1.25"), Decimal)]
    assert parse_payment(_changed("payment", appType="2")).app_type == 2
    assert parse_waybill(_changed("waybill", packNo=3.0, weight=0.62)).pack_no == 3


@pytest.mark.parametrize(
    ("value", "fen"),
    [(0, 0), (-0.0, 0), ("0", 0), (0.07, 7), ("0.07", 7), ("0.5", 50), (12, 1200), (999_999_999_999.99, 10**14 - 1)],
)
def test_money_to_fen_cached_or_not(value: object, fen: int) -> None:
    for _ in range(2):  # the first parse fills the cache of seen values, the second reads it
        assert parse_payment(_changed("payment", amountPaid=value)).amount_paid == fen
    money.KNOWN_FEN.clear()
    assert parse_payment(_changed("payment", amountPaid=value)).amount_paid == fen


def test_money_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(money, "_KNOWN_LIMIT", 3)
    money.KNOWN_FEN.clear()
    for cents in range(10):
        assert parse_payment(_changed("payment", amountPaid=f"1.{cents:02d}")).amount_paid == 100 + cents
        assert len(money.KNOWN_FEN) <= 3
