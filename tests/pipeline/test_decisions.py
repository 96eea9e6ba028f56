"""pipeline.decisions: status and return code per outcome, deterministic ids, the inspection sample."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.config import REGIMES, RulesConfig
from pipeline.decisions import (
    decide,
    decide_after,
    decide_incomplete,
    declaration_id,
    inspection_selected,
    review_id,
    status_for,
)
from pipeline.records import RETURN_STATUS, Order, OrderId, Payment, Status, Waybill
from pipeline.rules import REJECTING
from tests.fixtures import docs
from tests.pipeline.helpers import records

NEVER = replace(REGIMES["2019"], inspection_rate=0.0)
ALWAYS = replace(REGIMES["2019"], inspection_rate=1.0)

ORDER, PAYMENT, WAYBILL = records(docs.order(), docs.payment(), docs.waybill())


def other(kind: str) -> tuple[Order, Payment, Waybill]:
    """The same set with one document replaced by a modification (a new guid)."""
    o, p, w = docs.order(), docs.payment(), docs.waybill()
    if kind == "order":
        o = docs.order(app_time="20261111000006", appType=2)
    elif kind == "payment":
        p = docs.payment(app_time="20261111000106", appType=2)
    else:
        w = docs.waybill(app_time="20261111000306", appType=2)
    return records(o, p, w)


@pytest.mark.parametrize(
    ("reasons", "rate", "status", "inspection"),
    [
        ((), 0.0, "RELEASED", False),
        ((), 1.0, "INSPECTION", True),
        (("TAX_MISMATCH",), 1.0, "REVIEW", False),  # a flagged order is never sampled
        (("AMOUNT_FORMULA_MISMATCH", "FREIGHT_MISMATCH"), 0.0, "REVIEW", False),
        (("DOCUMENT_AFTER_DECISION",), 0.0, "REVIEW", False),
        *[((code,), 1.0, "REJECTED", False) for code in sorted(REJECTING)],
        (("CONSIGNEE_MISMATCH", "SINGLE_LIMIT_EXCEEDED"), 0.0, "REJECTED", False),
        (("ANNUAL_QUOTA_EXCEEDED", "TAX_MISMATCH"), 1.0, "REJECTED", False),
        (("MISSING_ORDER", "MISSING_WAYBILL"), 0.0, "REJECTED", False),
    ],
)
def test_status_for(reasons: tuple[str, ...], rate: float, status: Status, inspection: bool) -> None:
    assert status_for(reasons, "TM1", replace(NEVER, inspection_rate=rate)) == (status, inspection)


def test_rejecting_codes() -> None:
    assert (
        frozenset(
            {
                "INVALID_ID_NUMBER",
                "SINGLE_LIMIT_EXCEEDED",
                "NOT_ON_POSITIVE_LIST",
                "ANNUAL_QUOTA_EXCEEDED",
                "MISSING_ORDER",
                "MISSING_PAYMENT",
                "MISSING_WAYBILL",
            }
        )
        == REJECTING
    )


@pytest.mark.parametrize(
    ("reasons", "config", "status", "code", "inspection"),
    [
        ((), NEVER, "RELEASED", 800, False),
        ((), ALWAYS, "INSPECTION", 500, True),
        (("PAID_AMOUNT_MISMATCH",), ALWAYS, "REVIEW", 300, False),
        (("INVALID_ID_NUMBER", "PAID_AMOUNT_MISMATCH"), NEVER, "REJECTED", 100, False),
    ],
)
def test_decide_status_and_return_code(
    reasons: tuple[str, ...], config: RulesConfig, status: Status, code: int, inspection: bool
) -> None:
    decl = decide(ORDER, PAYMENT, WAYBILL, reasons, (31000, 2821), config, 77)
    assert (decl.status, decl.return_status, decl.inspection) == (status, code, inspection)
    assert decl.reasons == reasons and decl.matched == (not reasons)
    assert (decl.dutiable_value, decl.tax, decl.decided_at_ms) == (31000, 2821, 77)
    assert decl.event_time_ms == max(ORDER.app_time_ms, PAYMENT.app_time_ms, WAYBILL.app_time_ms) == WAYBILL.app_time_ms
    assert decl.documents == {"order": ORDER.guid, "payment": PAYMENT.guid, "waybill": WAYBILL.guid}
    assert (decl.order_no, decl.ebp_code, decl.ebc_code) == (ORDER.order_no, ORDER.ebp_code, ORDER.ebc_code)
    assert (decl.pay_code, decl.pay_transaction_id) == (PAYMENT.pay_code, PAYMENT.pay_transaction_id)
    assert (decl.logistics_code, decl.logistics_no, decl.buyer_id_number) == (
        WAYBILL.logistics_code,
        WAYBILL.logistics_no,
        ORDER.buyer_id_number,
    )


@pytest.mark.parametrize(
    ("status", "code"), [("RELEASED", 800), ("INSPECTION", 500), ("REVIEW", 300), ("REJECTED", 100)]
)
def test_return_codes(status: Status, code: int) -> None:
    assert RETURN_STATUS[status] == code
    assert decide(ORDER, PAYMENT, WAYBILL, (), (0, 0), NEVER, 0)._replace(status=status).return_status == code


def test_event_time_is_the_latest_app_time_whichever_document_it_is() -> None:
    late_order = ORDER._replace(app_time_ms=WAYBILL.app_time_ms + 5)
    assert decide(late_order, PAYMENT, WAYBILL, (), (0, 0), NEVER, 0).event_time_ms == WAYBILL.app_time_ms + 5


def test_declaration_id_is_deterministic() -> None:
    first = decide(ORDER, PAYMENT, WAYBILL, (), (1, 1), NEVER, 1)
    again = decide(*records(docs.order(), docs.payment(), docs.waybill()), ("TAX_MISMATCH",), (2, 2), ALWAYS, 999)
    assert first.declaration_id == again.declaration_id  # the same documents (the wall clock does not count)
    assert first.declaration_id == declaration_id(ORDER.order_no, (ORDER.guid, PAYMENT.guid, WAYBILL.guid))
    assert len(first.declaration_id) == 32 and int(first.declaration_id, 16) >= 0


@pytest.mark.parametrize("kind", ["order", "payment", "waybill"])
def test_a_changed_document_changes_the_declaration_id(kind: str) -> None:
    base = decide(ORDER, PAYMENT, WAYBILL, (), (0, 0), NEVER, 0).declaration_id
    changed = decide(*other(kind), (), (0, 0), NEVER, 0).declaration_id
    assert changed != base


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("A", ("x", "y", "z")), ("B", ("x", "y", "z"))),
        (("A", ("x", "y", "z")), ("A", ("x", "z", "y"))),
        (("A", ("x", None, None)), ("A", (None, "x", None))),
        (("A", ("x", None, None)), ("A", (None, None, "x"))),
        (("A", ("x", "y", None)), ("A", ("x", "y", "z"))),
        (("AB", ("x", "y", "z")), ("A", ("Bx", "y", "z"))),
    ],
)
def test_declaration_id_distinguishes(
    a: tuple[str, tuple[str | None, str | None, str | None]],
    b: tuple[str, tuple[str | None, str | None, str | None]],
) -> None:
    assert declaration_id(*a) != declaration_id(*b)
    assert declaration_id(*a) == declaration_id(*a)


def test_review_id_is_deterministic_and_not_a_declaration_id() -> None:
    assert review_id("A", "g") == review_id("A", "g")
    assert review_id("A", "g") != review_id("A", "h") != review_id("B", "h")
    assert review_id("A", "g") != declaration_id("A", ("g", None, None))


IDS = [f"TM2026{i:09d}" for i in range(10_000)]


@pytest.mark.parametrize("seed", ["clearance", "other-seed", ""])
def test_inspection_sample_is_deterministic_for_a_seed(seed: str) -> None:
    first = [inspection_selected(i, seed, 0.055) for i in IDS[:2000]]
    assert first == [inspection_selected(i, seed, 0.055) for i in IDS[:2000]]
    config = replace(NEVER, inspection_seed=seed, inspection_rate=0.055)
    assert [status_for((), i, config)[1] for i in IDS[:2000]] == first


def test_another_seed_selects_other_parcels() -> None:
    a = {i for i in IDS if inspection_selected(i, "clearance", 0.055)}
    b = {i for i in IDS if inspection_selected(i, "reseeded", 0.055)}
    assert a != b and len(a & b) < len(a) // 2


@pytest.mark.parametrize(
    ("rate", "low", "high"),
    [
        (0.0, 0, 0),
        (0.055, 450, 650),  # 5.5% +- 1 percentage point of 10,000
        (0.01, 0, 200),
        (0.5, 4_800, 5_200),
        (1.0, 10_000, 10_000),
    ],
)
def test_inspection_rate_over_many_ids(rate: float, low: int, high: int) -> None:
    selected = sum(inspection_selected(i, "clearance", rate) for i in IDS)
    assert low <= selected <= high


def test_a_higher_rate_selects_a_superset() -> None:
    chosen = [{i for i in IDS[:3000] if inspection_selected(i, "s", rate)} for rate in (0.01, 0.055, 0.2, 0.9)]
    assert all(small <= large for small, large in zip(chosen, chosen[1:], strict=False))
    assert all(len(small) < len(large) for small, large in zip(chosen, chosen[1:], strict=False))


@pytest.mark.parametrize(
    ("present", "reasons"),
    [
        ("o", ("MISSING_PAYMENT", "MISSING_WAYBILL")),
        ("p", ("MISSING_ORDER", "MISSING_WAYBILL")),
        ("w", ("MISSING_ORDER", "MISSING_PAYMENT")),
        ("op", ("MISSING_WAYBILL",)),
        ("ow", ("MISSING_PAYMENT",)),
        ("pw", ("MISSING_ORDER",)),
        ("", ("MISSING_ORDER", "MISSING_PAYMENT", "MISSING_WAYBILL")),
    ],
)
def test_decide_incomplete_lists_the_missing_documents(present: str, reasons: tuple[str, ...]) -> None:
    o = ORDER if "o" in present else None
    p = PAYMENT if "p" in present else None
    w = WAYBILL if "w" in present else None
    decl = decide_incomplete(OrderId("TM2026111100001"), (o, p, w), 123_456, 789)
    assert decl.reasons == reasons
    assert (decl.status, decl.return_status, decl.inspection, decl.matched) == ("REJECTED", 100, False, False)
    assert (decl.event_time_ms, decl.decided_at_ms) == (123_456, 789)
    assert decl.tax is None
    assert decl.dutiable_value == (ORDER.goods_value + ORDER.freight if o else None)
    assert decl.documents == {
        "order": o.guid if o else None,
        "payment": p.guid if p else None,
        "waybill": w.guid if w else None,
    }
    assert decl.declaration_id == declaration_id("TM2026111100001", (o and o.guid, p and p.guid, w and w.guid))
    assert (decl.ebp_code, decl.ebc_code, decl.buyer_id_number) == (
        (ORDER.ebp_code, ORDER.ebc_code, ORDER.buyer_id_number) if o else (PAYMENT.ebp_code if p else None, None, None)
    )
    assert (decl.pay_code, decl.pay_transaction_id) == (
        (PAYMENT.pay_code, PAYMENT.pay_transaction_id)
        if p
        else (ORDER.pay_code, ORDER.pay_transaction_id)
        if o
        else (None, None)
    )
    assert (decl.logistics_code, decl.logistics_no) == (
        (WAYBILL.logistics_code, WAYBILL.logistics_no) if w else (None, None)
    )


@pytest.mark.parametrize("doc", [ORDER, PAYMENT, WAYBILL], ids=["order", "payment", "waybill"])
def test_decide_after_is_one_review_record_for_that_document(doc: Order | Payment | Waybill) -> None:
    decl = decide_after(doc, 42)
    assert (decl.status, decl.return_status, decl.reasons) == ("REVIEW", 300, ("DOCUMENT_AFTER_DECISION",))
    assert decl.declaration_id == review_id(doc.order_no, doc.guid) == decide_after(doc, 43).declaration_id
    assert decl.documents == {k: (doc.guid if k == doc.kind else None) for k in ("order", "payment", "waybill")}
    assert (decl.event_time_ms, decl.decided_at_ms, decl.inspection) == (doc.app_time_ms, 42, False)
    assert (decl.dutiable_value, decl.tax) == (None, None)
