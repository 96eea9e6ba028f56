"""The published JSON Schemas (schemas/*.schema.json) and their golden samples.

Schemas and samples are loaded with floats as Decimal, so `multipleOf: 0.01` is
checked exactly (with binary floats jsonschema rejects 0.07).
"""

from __future__ import annotations

import base64
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pipeline.patterns import APP_TIME_PATTERN, GCODE_PATTERN, MONEY_STRING_PATTERN

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NAMES = ("order", "payment", "waybill", "declaration", "deadletter")
INPUTS = ("order", "payment", "waybill")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _load(SCHEMAS / f"{name}.schema.json")
    return schema


def _sample(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = _load(SCHEMAS / "samples" / f"{name}.json")
    return sample


def _patterns_of(node: Any, key: str) -> list[str]:
    """Every `pattern` found under a property or $def called `key`."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, sub in node.items():
            if name == key and isinstance(sub, dict):
                found += [v for k, v in _walk(sub) if k == "pattern"]
            found += _patterns_of(sub, key)
    elif isinstance(node, list):
        for sub in node:
            found += _patterns_of(sub, key)
    return found


def _walk(node: Any) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            pairs.append((k, v))
            pairs += _walk(v)
    elif isinstance(node, list):
        for v in node:
            pairs += _walk(v)
    return pairs


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = _schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", NAMES)
def test_golden_sample_validates(name: str) -> None:
    validator = Draft202012Validator(_schema(name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_sample(name))]
    assert errors == []


@pytest.mark.parametrize("name", INPUTS)
def test_app_time_pattern_is_the_parser_constant(name: str) -> None:
    schema = _schema(name)
    assert schema["$defs"]["appTime"]["pattern"] == APP_TIME_PATTERN
    assert _patterns_of(schema, "appTime") == [APP_TIME_PATTERN]
    if name == "payment":
        # payTime refers to the same $def.
        assert schema["properties"]["payTime"]["$ref"] == "#/$defs/appTime"


@pytest.mark.parametrize("name", INPUTS)
def test_money_pattern_is_the_parser_constant(name: str) -> None:
    money = _schema(name)["$defs"]["money"]
    assert [v for k, v in _walk(money) if k == "pattern"] == [MONEY_STRING_PATTERN]


def test_gcode_pattern_is_the_parser_constant() -> None:
    item = _schema("order")["$defs"]["item"]
    assert item["properties"]["gcode"]["pattern"] == GCODE_PATTERN


def test_schemas_are_self_contained() -> None:
    for name in NAMES:
        refs = [v for k, v in _walk(_schema(name)) if k == "$ref"]
        assert all(ref.startswith("#/$defs/") for ref in refs), name


@pytest.mark.parametrize(
    "text",
    ["20240229000000", "20000229235959", "19000101000000", "20991231235959", "19040229120000", "20230430000000"],
)
def test_app_time_pattern_accepts(text: str) -> None:
    assert re.fullmatch(APP_TIME_PATTERN, text)
    assert re.search(APP_TIME_PATTERN, text)


@pytest.mark.parametrize(
    "text",
    [
        "19000229000000",  # 1900 is not a leap year
        "20230229000000",
        "20230431000000",
        "20231301000000",
        "20230101240000",
        "2023010100000",  # 13 characters
        "202301010000000",  # 15 characters
        "18991231235959",
        "21000101000000",
        "20230100000000",
        "20230101006000",
        "20230101000060",
        "2023-01-01 00:00:00",
        "２０２３０１０１０００００００",  # fullwidth digits
    ],
)
def test_app_time_pattern_rejects(text: str) -> None:
    assert not re.search(APP_TIME_PATTERN, text)


def test_order_sample_is_internally_consistent() -> None:
    order = _sample("order")
    fen = Decimal("0.01")
    total = Decimal(0)
    for item in order["items"]:
        expected = (Decimal(str(item["price"])) * Decimal(str(item["qty"]))).quantize(fen, ROUND_HALF_UP)
        assert Decimal(str(item["totalPrice"])) == expected
        total += Decimal(str(item["totalPrice"]))
    goods, freight = Decimal(str(order["goodsValue"])), Decimal(str(order["freight"]))
    tax, discount = Decimal(str(order["taxTotal"])), Decimal(str(order["discount"]))
    assert total == goods
    assert tax == ((goods + freight) * Decimal("0.091")).quantize(fen, ROUND_HALF_UP)
    assert Decimal(str(order["acturalPaid"])) == goods + freight + tax - discount
    assert Decimal(str(_sample("payment")["amountPaid"])) == Decimal(str(order["acturalPaid"]))
    assert Decimal(str(_sample("waybill")["freight"])) == freight


def test_order_sample_buyer_id_is_valid() -> None:
    number = _sample("order")["buyerIdNumber"]
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    assert len(number) == 18
    check = "10X98765432"[sum(int(c) * w for c, w in zip(number[:17], weights, strict=True)) % 11]
    assert number[17] == check
    assert _sample("payment")["payerIdNumber"] == number


def test_samples_tie_together() -> None:
    order, payment, waybill = _sample("order"), _sample("payment"), _sample("waybill")
    declaration = _sample("declaration")
    assert declaration["documents"] == {"order": order["guid"], "payment": payment["guid"], "waybill": waybill["guid"]}
    assert {order["orderNo"], payment["orderNo"], waybill["orderNo"], declaration["orderNo"]} == {order["orderNo"]}
    assert Decimal(declaration["dutiableValue"]) == Decimal(str(order["goodsValue"])) + Decimal(str(order["freight"]))
    assert Decimal(declaration["tax"]) == Decimal(str(order["taxTotal"]))


def test_deadletter_sample_value_is_an_invalid_waybill() -> None:
    raw = base64.b64decode(_sample("deadletter")["value"], validate=True)
    message = json.loads(raw, parse_float=Decimal)
    validator = Draft202012Validator(_schema("waybill"))
    assert [list(e.absolute_path) for e in validator.iter_errors(message)] == [["weight"]]


@pytest.mark.parametrize(
    ("status", "code", "reasons", "inspection", "valid"),
    [
        ("RELEASED", 800, [], False, True),
        ("INSPECTION", 500, [], True, True),
        ("REVIEW", 300, ["CONSIGNEE_MISMATCH", "TAX_MISMATCH"], False, True),
        ("REVIEW", 300, ["DOCUMENT_AFTER_DECISION"], False, True),
        ("REJECTED", 100, ["FREIGHT_MISMATCH", "INVALID_ID_NUMBER"], False, True),
        ("REJECTED", 100, ["MISSING_PAYMENT", "MISSING_WAYBILL"], False, True),
        ("RELEASED", 500, [], False, False),
        ("REJECTED", 300, ["MISSING_ORDER"], False, False),
        ("REVIEW", 100, ["TAX_MISMATCH"], False, False),
        ("INSPECTION", 800, [], True, False),
        ("RELEASED", 800, ["TAX_MISMATCH"], False, False),
        ("REVIEW", 300, [], False, False),
        ("REVIEW", 300, ["MISSING_ORDER"], False, False),
        ("REJECTED", 100, ["TAX_MISMATCH"], False, False),
        ("REVIEW", 300, ["TAX_MISMATCH", "TAX_MISMATCH"], False, False),
        ("REVIEW", 300, ["SOMETHING_ELSE"], False, False),
        ("INSPECTION", 500, [], False, False),
        ("RELEASED", 800, [], True, False),
    ],
)
def test_declaration_status_ties(status: str, code: int, reasons: list[str], inspection: bool, valid: bool) -> None:
    declaration = {**_sample("declaration"), "status": status, "returnStatus": code, "reasons": reasons}
    declaration["inspection"] = inspection
    assert Draft202012Validator(_schema("declaration")).is_valid(declaration) is valid


def test_declaration_with_missing_documents() -> None:
    nulls = dict.fromkeys(("ebpCode", "ebcCode", "buyerIdNumber", "dutiableValue", "tax"))
    declaration = {
        **_sample("declaration"),
        **nulls,
        "status": "REJECTED",
        "returnStatus": 100,
        "reasons": ["MISSING_ORDER"],
        "documents": {"order": None, "payment": "p", "waybill": "w"},
    }
    assert Draft202012Validator(_schema("declaration")).is_valid(declaration)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventTime", "2026-11-11T00:00:05Z"),
        ("eventTime", "2026-11-11 00:00:05+08:00"),
        ("decidedAt", "2026-11-26T20:01:02Z"),
        ("decidedAt", "2026-11-26T20:01:02.345+00:00"),
        ("dutiableValue", "258"),
        ("tax", "23.4"),
        ("tax", 23.48),
        ("returnStatus", "800"),
        ("inspection", 0),
        ("extra", 1),
    ],
)
def test_declaration_rejects(field: str, value: object) -> None:
    declaration = {**_sample("declaration"), field: value}
    assert not Draft202012Validator(_schema("declaration")).is_valid(declaration)


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("key", None, True),
        ("field", None, True),
        ("error", "INTERNAL_ERROR", True),
        ("value", "", True),
        ("deadLetteredAt", "2026-11-26T20:01:02Z", True),
        ("reason", "two\nlines", False),
        ("value", "not base64!", False),
        ("sourceOffset", -1, False),
        ("error", "BROKEN", False),
        ("deadLetteredAt", "2026-11-27T04:01:02+08:00", False),
    ],
)
def test_deadletter_fields(field: str, value: object, valid: bool) -> None:
    record = {**_sample("deadletter"), field: value}
    assert Draft202012Validator(_schema("deadletter")).is_valid(record) is valid
