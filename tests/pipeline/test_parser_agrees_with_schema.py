"""The fast runtime parser accepts exactly the messages the published schemas accept.

Hypothesis builds valid orders, payments and waybills, mutates them (missing fields,
wrong JSON types, malformed money, bad times and codes, extra fields, non-objects,
broken JSON) and serialises them with orjson. For every message,
`schema_valid(raw) == parser_accepts(raw)`.

The schema side is a faithful reading of JSON Schema 2020-12:
- schemas and messages are decoded with floats as Decimal, so `multipleOf: 0.01` is exact;
- `integer` is any number with a zero fractional part (1.0 included), as the spec says;
- `pattern` is ECMA-262, whose `$` matches only at the very end. Python's `re.search`
  (what jsonschema uses) also lets `$` match before a final newline, so the oracle
  replaces the anchor by `\\Z`.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, ValidationError, validators

from pipeline.errors import InvalidRecord
from pipeline.parsing import parse_order, parse_payment, parse_waybill

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MAX_MONEY_FEN = 99_999_999_999_999
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Json = Any
Parser = Callable[[bytes], object]


# ---------------------------------------------------------------- the schema oracle


def _is_integer(checker: object, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    if isinstance(instance, float):
        return instance.is_integer()
    if isinstance(instance, Decimal):
        return instance.is_finite() and instance == instance.to_integral_value()
    return False


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _ecma_pattern(validator: Any, pattern: str, instance: object, schema: object) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(  # type: ignore[no-untyped-call]  # untyped in types-jsonschema
    Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _decode(raw: bytes) -> Json:
    """Strict JSON (RFC 8259, UTF-8) with floats as Decimal; ValueError if not JSON."""
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)


def _inline(node: Json, defs: dict[str, Json]) -> Json:
    """The schema with its local `#/$defs/...` refs inlined: same meaning, 5x faster to check."""
    if isinstance(node, list):
        return [_inline(sub, defs) for sub in node]
    if not isinstance(node, dict):
        return node
    node = {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    ref = node.pop("$ref", None)
    if ref is None:
        return node
    assert ref.startswith("#/$defs/") and set(node) <= {"description"}, ref
    return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **node}


@cache
def _validator(name: str) -> Any:
    schema = _decode((SCHEMAS / f"{name}.schema.json").read_bytes())
    _Validator.check_schema(schema)
    return _Validator(_inline(schema, schema.get("$defs", {})))


def schema_errors(raw: bytes, name: str) -> list[str]:
    try:
        message = _decode(raw)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    return [f"{e.json_path}: {e.message}" for e in _validator(name).iter_errors(message)]


def schema_valid(raw: bytes, name: str) -> bool:
    try:
        message = _decode(raw)
    except ValueError:
        return False
    return bool(_validator(name).is_valid(message))


def parser_accepts(raw: bytes, parse: Parser) -> bool:
    """False iff the parser raises InvalidRecord; any other exception fails the test."""
    try:
        parse(raw)
    except InvalidRecord as err:
        assert err.reason, "InvalidRecord without a reason"
        return False
    return True


def assert_agree(raw: bytes, name: str, parse: Parser) -> None:
    errors = schema_errors(raw, name)
    accepted = parser_accepts(raw, parse)
    if accepted != (not errors):
        detail = f"schema errors: {errors}" if errors else f"parser raised: {_reason(raw, parse)}"
        pytest.fail(f"parser {'accepts' if accepted else 'rejects'} {raw!r}; {detail}")


def _reason(raw: bytes, parse: Parser) -> str:
    try:
        parse(raw)
    except InvalidRecord as err:
        return f"InvalidRecord(reason={err.reason!r}, field={err.field!r})"
    return "nothing"


# ---------------------------------------------------------------- valid documents


def _fen_to_float(fen: int) -> float:
    return float(f"{fen // 100}.{fen % 100:02d}")


def _fen_to_text(fen: int, decimals: int) -> str:
    whole, cents = divmod(fen, 100)
    if decimals == 0:
        return str(whole)
    return f"{whole}.{cents:02d}"[: len(str(whole)) + 1 + decimals]


fen = st.one_of(st.integers(0, 100_000_00), st.integers(0, MAX_MONEY_FEN))
money = st.one_of(
    fen.map(lambda f: f // 100),
    fen.map(_fen_to_float),
    st.builds(_fen_to_text, fen.map(lambda f: f - f % 10), st.sampled_from([0, 1])),
    st.builds(_fen_to_text, fen, st.just(2)),
    st.sampled_from([0, 0.0, -0.0, 0.07, "0.07", 0.1, 0.3, 999_999_999_999.99, "999999999999.99", 999_999_999_999]),
)
text = st.text(min_size=1, max_size=12)
optional_text = st.one_of(st.none(), st.text(max_size=8))
app_time = st.builds(
    lambda day, time: f"{day:%Y%m%d}{time:%H%M%S}", st.dates(date(1900, 1, 1), date(2099, 12, 31)), st.times()
)
common = {
    "guid": st.one_of(st.uuids().map(str), st.text(min_size=36, max_size=36)),
    "appType": st.sampled_from([1, 2, 3, "1", "2", "3", 1.0, 3.0]),
    "appTime": app_time,
    "orderNo": st.text(min_size=1, max_size=60),
    "currency": st.just("142"),
}
ebp_code = st.text(min_size=10, max_size=10)
whole = st.one_of(st.integers(1, 1000), st.integers(1, 1000).map(float))
item = st.fixed_dictionaries(
    {
        "gnum": whole,
        "itemName": text,
        "gcode": st.text(string.digits, min_size=10, max_size=10),
        "qty": st.one_of(
            st.integers(1, 1_000_000),
            st.floats(min_value=0, max_value=1_000_000, exclude_min=True),
        ),
        "price": money,
        "totalPrice": money,
    },
    optional={"itemNo": optional_text, "unit": optional_text, "country": optional_text},
)
valid_order = st.fixed_dictionaries(
    {
        **common,
        "ebpCode": ebp_code,
        **dict.fromkeys(["goodsValue", "freight", "discount", "taxTotal", "acturalPaid"], money),
        **dict.fromkeys(["ebcCode", "buyerRegNo", "buyerName", "buyerIdType", "buyerIdNumber"], text),
        **dict.fromkeys(["buyerTelephone", "consignee", "consigneeTelephone", "consigneeAddress"], text),
        "items": st.lists(item, min_size=1, max_size=3),
    },
    optional={"payCode": optional_text, "payTransactionId": optional_text},
)
valid_payment = st.fixed_dictionaries(
    {
        **common,
        "ebpCode": ebp_code,
        **dict.fromkeys(["payCode", "payTransactionId", "payerIdType", "payerIdNumber", "payerName"], text),
        "amountPaid": money,
        "payTime": app_time,
    }
)
valid_waybill = st.fixed_dictionaries(
    {
        **common,
        **dict.fromkeys(["logisticsCode", "logisticsNo", "consignee", "consigneeTelephone"], text),
        "consigneeAddress": text,
        "freight": money,
        "insuredFee": money,
        "weight": st.one_of(st.integers(0, 1_000_000), st.floats(min_value=0, max_value=1_000_000)),
        "packNo": whole,
    }
)
VALID = {"order": valid_order, "payment": valid_payment, "waybill": valid_waybill}
PARSERS: dict[str, Parser] = {"order": parse_order, "payment": parse_payment, "waybill": parse_waybill}


# ---------------------------------------------------------------- mutations

SUSPECT_VALUES: list[Json] = [
    # JSON types and numbers near the bounds
    None, True, False, 0, 1, 2, 3, 4, -1, 1.0, 2.0, 1.5, 0.0, -0.0, -0.01, 0.001, 1e-05, 12.345, 0.07,
    999_999_999_999.99, 999_999_999_999.995, 1_000_000_000_000, 1_000_000_000_000.0, 10**18,
    1_000_000, 1_000_000.0, 1_000_000.01, 1_000_001, 5e-324, 1e16,
    [], {}, [1], {"a": 1}, ["142"],
    # money strings
    "", " ", "0", "0.0", "0.00", "1", "2", "3", "4", "1.0", "1.234", "-1", "-0", "01.5", "00", "1e3", " 12",
    "12 ", "12\n", "1.", ".5", "+1", "1,000.00", "０.５", "999999999999.99", "1000000000000", "12.345",
    # codes and times
    "142", " 142", "142\n", "156", "20240229000000", "20000229235959", "19000229000000", "20230229000000",
    "20230431000000", "20231301000000", "20230101240000", "2023010100000", "20230101000000\n",
    "２０２３０１０１０００００００", "3304990000", "330499000", "33049900000", "330499000a", "3304990000\n",
    "３３０４９９００００", "3304 99000",
    # lengths
    "x" * 9, "x" * 10, "x" * 11, "x" * 35, "x" * 36, "x" * 37, "x" * 60, "x" * 61, "张" * 10, "张" * 36,
]  # fmt: skip
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(min_value=-1e15, max_value=1e15),
    st.text(max_size=6),
)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4,
)
replacement = st.one_of(st.sampled_from(SUSPECT_VALUES), json_scalars, any_json)
extra_key = st.one_of(st.text(max_size=8), st.sampled_from(["__faust", "gnum", "items", "remark", ""]))


def _containers(doc: dict[str, Json]) -> list[dict[str, Json]]:
    """The message and its item objects: the places a mutation can hit."""
    found = [doc]
    items = doc.get("items")
    if isinstance(items, list):
        found += [entry for entry in items if isinstance(entry, dict)]
    return found


@st.composite
def _mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Json]]) -> Json:
    doc: Json = draw(valid)
    for _ in range(draw(st.integers(0, 3))):
        if not isinstance(doc, dict):
            break
        target = draw(st.sampled_from(_containers(doc)))
        action = draw(st.sampled_from(["drop", "replace", "replace", "replace", "extra", "items", "top"]))
        if action == "drop" and target:
            del target[draw(st.sampled_from(sorted(target)))]
        elif action == "replace" and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(replacement)
        elif action == "extra":
            target[draw(extra_key)] = draw(any_json)
        elif action == "items":
            doc["items"] = draw(st.sampled_from([[], {}, None, "[]", [None], [[]], [1], doc.get("items", [])]))
        elif action == "top":
            doc = draw(st.sampled_from([[], [doc], "x", 1, 1.5, None, True]))
    return doc


@st.composite
def messages(draw: st.DrawFn, kind: str) -> bytes:
    """orjson bytes of a valid or mutated document; now and then not JSON at all."""
    raw = orjson.dumps(draw(_mutated(VALID[kind])))
    broken = draw(st.sampled_from(["no"] * 12 + ["truncate", "bad-utf8", "trailing", "empty"]))
    if broken == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif broken == "bad-utf8":
        raw = raw.replace(b'"', b'"\xff', 1)
    elif broken == "trailing":
        raw += draw(st.sampled_from([b"\n", b" ", b"x", b"{}", b"\x00"]))
    elif broken == "empty":
        raw = b""
    return raw


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_oracle_is_exact_on_money(kind: str) -> None:
    # The oracle itself: 0.07 passes multipleOf 0.01 (it fails with binary floats).
    name = {"order": "goodsValue", "payment": "amountPaid", "waybill": "freight"}[kind]
    doc = {"a": 1}
    assert any(name in e for e in schema_errors(orjson.dumps(doc), kind))
    assert not [e for e in schema_errors(orjson.dumps({name: 0.07}), kind) if f"$.{name}" in e]
    assert [e for e in schema_errors(orjson.dumps({name: 0.071}), kind) if f"$.{name}" in e]
    assert [e for e in schema_errors(orjson.dumps({name: "12\n"}), kind) if f"$.{name}" in e]


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
@given(data=st.data())
@settings(PROPERTY, max_examples=100)
def test_valid_documents_are_accepted_by_both(kind: str, data: st.DataObject) -> None:
    raw = orjson.dumps(data.draw(VALID[kind]))
    assert schema_errors(raw, kind) == []
    assert parser_accepts(raw, PARSERS[kind])


@given(raw=messages("order"))
@PROPERTY
def test_parse_order_agrees_with_schema(raw: bytes) -> None:
    assert_agree(raw, "order", parse_order)


@given(raw=messages("payment"))
@PROPERTY
def test_parse_payment_agrees_with_schema(raw: bytes) -> None:
    assert_agree(raw, "payment", parse_payment)


@given(raw=messages("waybill"))
@PROPERTY
def test_parse_waybill_agrees_with_schema(raw: bytes) -> None:
    assert_agree(raw, "waybill", parse_waybill)


@given(doc=valid_order)
@settings(PROPERTY, max_examples=100)
def test_parser_reads_order_money_exactly(doc: dict[str, Json]) -> None:
    order = parse_order(orjson.dumps(doc))
    wire = _decode(orjson.dumps(doc))

    def fen_of(value: Json) -> int:
        return int(Decimal(value) * 100)

    assert order.goods_value == fen_of(wire["goodsValue"])
    assert order.actural_paid == fen_of(wire["acturalPaid"])
    assert [i.price for i in order.items] == [fen_of(i["price"]) for i in wire["items"]]
    assert [i.qty for i in order.items] == [Decimal(i["qty"]) for i in wire["items"]]


# ---------------------------------------------------------------- every field x every suspect value

_DROP = object()


def _sample(kind: str) -> dict[str, Json]:
    sample: dict[str, Json] = json.loads((SCHEMAS / "samples" / f"{kind}.json").read_text(encoding="utf-8"))
    return sample


def _substitutions(doc: dict[str, Json]) -> Iterator[tuple[str, Json]]:
    """The golden sample with one field dropped or replaced, or one unknown field added."""
    for value in [_DROP, *SUSPECT_VALUES]:
        for key in doc:
            yield f"{key}={value!r}", _replace(doc, key, value)
        for i, entry in enumerate(doc.get("items", [])[:1]):
            for key in [*entry, "itemNo", "unit", "country"]:
                items = [*doc["items"]]
                items[i] = _replace(entry, key, value)
                yield f"items[{i}].{key}={value!r}", {**doc, "items": items}
            if value is not _DROP:
                yield f"items[{i}]={value!r}", {**doc, "items": [value]}
        if value is not _DROP:
            yield f"unknownField={value!r}", {**doc, "unknownField": value}


def _replace(doc: dict[str, Json], key: str, value: Json) -> dict[str, Json]:
    return {k: v for k, v in doc.items() if k != key} if value is _DROP else {**doc, key: value}


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_every_field_against_suspect_values(kind: str) -> None:
    # Deterministic companion of the properties: every single-field change of the sample.
    disagreements = []
    for label, doc in _substitutions(_sample(kind)):
        raw = orjson.dumps(doc)
        schema_ok = schema_valid(raw, kind)
        try:
            accepted = parser_accepts(raw, PARSERS[kind])
        except Exception as exc:  # noqa: BLE001 - collect every bug, then fail once
            disagreements.append(f"{label}: parser raised {type(exc).__name__}: {exc}")
            continue
        if accepted != schema_ok:
            disagreements.append(f"{label}: schema {'accepts' if schema_ok else 'rejects'}, parser does not")
    assert not disagreements, "\n".join(disagreements)


# ---------------------------------------------------------------- readable reasons


def _without(doc: dict[str, Json], key: str) -> dict[str, Json]:
    return {k: v for k, v in doc.items() if k != key}


def _with_item(doc: dict[str, Json], **changes: Json) -> dict[str, Json]:
    return {**doc, "items": [{**doc["items"][0], **changes}, *doc["items"][1:]]}


ORDER, PAYMENT, WAYBILL = _sample("order"), _sample("payment"), _sample("waybill")
BAD_MESSAGES: list[tuple[str, Json, str | None]] = [
    ("order", _without(ORDER, "orderNo"), "orderNo"),
    ("order", {**ORDER, "goodsValue": "1.234"}, "goodsValue"),
    ("order", {**ORDER, "discount": -1}, "discount"),
    ("order", {**ORDER, "taxTotal": True}, "taxTotal"),
    ("order", {**ORDER, "appTime": "20230229000000"}, "appTime"),
    ("order", {**ORDER, "appType": 4}, "appType"),
    ("order", {**ORDER, "currency": "156"}, "currency"),
    ("order", {**ORDER, "ebpCode": "330196"}, "ebpCode"),
    ("order", {**ORDER, "guid": "short"}, "guid"),
    ("order", {**ORDER, "payCode": 12}, "payCode"),
    ("order", {**ORDER, "items": []}, "items"),
    ("order", _with_item(ORDER, qty=0), "items[0].qty"),
    ("order", _with_item(ORDER, gcode="330499"), "items[0].gcode"),
    ("order", _with_item(ORDER, price=12.345), "items[0].price"),
    ("order", {**ORDER, "items": [ORDER["items"][0], _without(ORDER["items"][1], "itemName")]}, "items[1].itemName"),
    ("payment", {**PAYMENT, "amountPaid": "01.5"}, "amountPaid"),
    ("payment", {**PAYMENT, "payTime": "2026111100000"}, "payTime"),
    ("payment", {**PAYMENT, "payerName": ""}, "payerName"),
    ("waybill", {**WAYBILL, "weight": "0.62kg"}, "weight"),
    ("waybill", {**WAYBILL, "packNo": 0}, "packNo"),
    ("waybill", {**WAYBILL, "insuredFee": None}, "insuredFee"),
]


@pytest.mark.parametrize(("kind", "doc", "field"), BAD_MESSAGES)
def test_invalid_record_names_the_field(kind: str, doc: Json, field: str) -> None:
    raw = orjson.dumps(doc)
    assert schema_errors(raw, kind), "the example must break the schema too"
    with pytest.raises(InvalidRecord) as caught:
        PARSERS[kind](raw)
    assert caught.value.field == field
    assert caught.value.reason.strip()
    assert field in caught.value.reason
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[]", b'"order"', b"null", b"\xff\xfe{}"])
@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_not_an_object_is_invalid(kind: str, raw: bytes) -> None:
    assert schema_errors(raw, kind)
    with pytest.raises(InvalidRecord) as caught:
        PARSERS[kind](raw)
    assert caught.value.field is None
    assert caught.value.reason.strip()
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_golden_samples_parse(kind: str) -> None:
    raw = (SCHEMAS / "samples" / f"{kind}.json").read_bytes()
    assert schema_errors(raw, kind) == []
    assert parser_accepts(raw, PARSERS[kind])
