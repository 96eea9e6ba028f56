"""The trace generator: determinism, order, shapes, fault coverage, money and IDs."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from clearance.traces import FILE_NAMES
from tracegen.faults import FAULTS
from tracegen.generator import generate
from tracegen.labels import valid_id

REQUIRED = {
    "orders.jsonl": {"guid", "appType", "appTime", "orderNo", "ebpCode", "goodsValue", "freight", "discount",
                     "taxTotal", "acturalPaid", "buyerIdNumber", "consignee", "items"},
    "payments.jsonl": {"guid", "appType", "appTime", "orderNo", "payCode", "payTransactionId", "amountPaid"},
    "waybills.jsonl": {"guid", "appType", "appTime", "orderNo", "freight", "logisticsNo", "consignee"},
}  # fmt: skip


def _gen(path: Path, seed: int, n: int) -> Path:
    generate(path, "peak-hour", n, seed, None, 0.12, 0.002)
    return path


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gen(tmp_path_factory.mktemp("t20k"), 7, 20_000)


def _bytes(d: Path) -> list[bytes]:
    return [(d / f).read_bytes() for f in (*FILE_NAMES, "labels.jsonl", "expected_deadletters.jsonl")]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (_gen(tmp_path / x, s, 2_000) for x, s in (("a", 1), ("b", 1), ("c", 2)))
    assert _bytes(a) == _bytes(b)
    assert _bytes(a) != _bytes(c)


def _lines(trace: Path, name: str) -> list[bytes]:
    return (trace / name).read_bytes().splitlines()


def _valid(trace: Path, name: str) -> list[dict[str, Any]]:
    dead = {x["line"] for x in map(orjson.loads, _lines(trace, "expected_deadletters.jsonl")) if x["file"] == name}
    return [orjson.loads(raw) for i, raw in enumerate(_lines(trace, name)) if i not in dead]


@pytest.mark.parametrize("name", FILE_NAMES)
def test_files_in_app_time_order_with_required_fields(trace: Path, name: str) -> None:
    docs = _valid(trace, name)
    times = [d["appTime"] for d in docs]
    assert times == sorted(times)
    assert all(REQUIRED[name] <= d.keys() and len(d["guid"]) == 36 for d in docs)


def test_every_fault_kind_and_reason_present(trace: Path) -> None:
    info = orjson.loads((trace / "trace.json").read_bytes())
    assert all(info["faults"][k] > 0 for k in FAULTS)
    codes = {r for x in map(orjson.loads, _lines(trace, "labels.jsonl")) for r in x["reasons"]}
    expected = {"AMOUNT_FORMULA_MISMATCH", "ITEM_TOTAL_MISMATCH", "PAID_AMOUNT_MISMATCH", "BUYER_PAYER_MISMATCH",
                "PLATFORM_MISMATCH", "PAYMENT_REFERENCE_MISMATCH", "CONSIGNEE_MISMATCH", "FREIGHT_MISMATCH",
                "INVALID_ID_NUMBER", "TAX_MISMATCH", "SINGLE_LIMIT_EXCEEDED", "NOT_ON_POSITIVE_LIST",
                "ANNUAL_QUOTA_EXCEEDED", "MISSING_ORDER", "MISSING_PAYMENT", "MISSING_WAYBILL",
                "DOCUMENT_AFTER_DECISION"}  # fmt: skip
    assert codes == expected
    kinds = {x["kind"] for x in map(orjson.loads, _lines(trace, "expected_deadletters.jsonl"))}
    assert len(kinds) == 6


def _fen(v: object) -> Decimal:
    d = Decimal(v) if isinstance(v, str) else Decimal(repr(v))
    assert d == d.quantize(Decimal("0.01"))
    return d


def test_clean_orders_money_and_ids_consistent(trace: Path) -> None:
    clean = {x["orderNo"] for x in map(orjson.loads, _lines(trace, "labels.jsonl")) if not x["reasons"]}
    pay_docs = _valid(trace, "payments.jsonl")
    once = Counter(p["orderNo"] for p in pay_docs)
    pays = {p["orderNo"]: p for p in pay_docs if once[p["orderNo"]] == 1}
    checked = 0
    for o in _valid(trace, "orders.jsonl"):
        if o["orderNo"] not in clean or o["orderNo"] not in pays:
            continue
        totals = [_fen(i["totalPrice"]) for i in o["items"]]
        for item, total in zip(o["items"], totals, strict=True):
            exact = _fen(item["price"]) * Decimal(repr(item["qty"]))
            assert total == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        goods, freight = _fen(o["goodsValue"]), _fen(o["freight"])
        assert sum(totals) == goods
        tax = ((goods + freight) * Decimal("0.091")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert _fen(o["taxTotal"]) == tax
        paid = goods + freight + tax - _fen(o["discount"])
        assert _fen(o["acturalPaid"]) == paid == _fen(pays[o["orderNo"]]["amountPaid"])
        assert goods + freight <= 5000
        assert valid_id(o["buyerIdNumber"], o["appTime"][:8])
        checked += 1
    assert checked > 15_000
