"""The three-document comparison: one small function per reason code (docs/CONTRACT.md).

Each rule takes a `Comparison` (the three documents plus the regime) and returns
its reason code or None. ANNUAL_QUOTA_EXCEEDED is not here: it needs state keyed
by buyer and lives in `pipeline.quota`, the second stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from pipeline.config import RulesConfig
from pipeline.idcard import is_valid_resident_id
from pipeline.money import mul_round_half_up
from pipeline.records import Order, Payment, TupleNew, Waybill
from pipeline.text import norm, norm_id, same, same_id

_new: Final[TupleNew] = tuple.__new__

AMOUNT_FORMULA_MISMATCH = "AMOUNT_FORMULA_MISMATCH"
ITEM_TOTAL_MISMATCH = "ITEM_TOTAL_MISMATCH"
PAID_AMOUNT_MISMATCH = "PAID_AMOUNT_MISMATCH"
BUYER_PAYER_MISMATCH = "BUYER_PAYER_MISMATCH"
PLATFORM_MISMATCH = "PLATFORM_MISMATCH"
PAYMENT_REFERENCE_MISMATCH = "PAYMENT_REFERENCE_MISMATCH"
CONSIGNEE_MISMATCH = "CONSIGNEE_MISMATCH"
FREIGHT_MISMATCH = "FREIGHT_MISMATCH"
INVALID_ID_NUMBER = "INVALID_ID_NUMBER"
TAX_MISMATCH = "TAX_MISMATCH"
SINGLE_LIMIT_EXCEEDED = "SINGLE_LIMIT_EXCEEDED"
NOT_ON_POSITIVE_LIST = "NOT_ON_POSITIVE_LIST"
ANNUAL_QUOTA_EXCEEDED = "ANNUAL_QUOTA_EXCEEDED"
MISSING_ORDER = "MISSING_ORDER"
MISSING_PAYMENT = "MISSING_PAYMENT"
MISSING_WAYBILL = "MISSING_WAYBILL"
DOCUMENT_AFTER_DECISION = "DOCUMENT_AFTER_DECISION"

# Any of these makes a declaration REJECTED (100); mismatches alone make it REVIEW (300).
REJECTING = frozenset(
    {
        INVALID_ID_NUMBER,
        SINGLE_LIMIT_EXCEEDED,
        NOT_ON_POSITIVE_LIST,
        ANNUAL_QUOTA_EXCEEDED,
        MISSING_ORDER,
        MISSING_PAYMENT,
        MISSING_WAYBILL,
    }
)


class Comparison(NamedTuple):
    """The inputs of every rule: three documents, the regime, and derived amounts."""

    order: Order
    payment: Payment
    waybill: Waybill
    config: RulesConfig
    dutiable: int
    tax: int


def compare(order: Order, payment: Payment, waybill: Waybill, config: RulesConfig) -> Comparison:
    """Build the comparison; dutiable value = goodsValue + freight, tax half-up to the fen."""
    dutiable = order.goods_value + order.freight
    tax = mul_round_half_up(dutiable, config.tax_rate)
    return _new(Comparison, (order, payment, waybill, config, dutiable, tax))  # NamedTuple.__new__ is Python


def amount_formula(c: Comparison) -> str | None:
    """The paid total: acturalPaid must equal goodsValue + freight + taxTotal - discount."""
    o = c.order
    expected = o.goods_value + o.freight + o.tax_total - o.discount
    return AMOUNT_FORMULA_MISMATCH if o.actural_paid != expected else None


def item_totals(c: Comparison) -> str | None:
    """Each totalPrice = price x qty (half-up), and the totals sum to goodsValue."""
    items = c.order.items
    for item in items:
        if item.total_price != mul_round_half_up(item.price, item.qty):
            return ITEM_TOTAL_MISMATCH
    return ITEM_TOTAL_MISMATCH if sum(i.total_price for i in items) != c.order.goods_value else None


def paid_amount(c: Comparison) -> str | None:
    """The payment pays exactly acturalPaid."""
    return PAID_AMOUNT_MISMATCH if c.order.actural_paid != c.payment.amount_paid else None


def buyer_payer(c: Comparison) -> str | None:
    """The payer is the buyer: same ID number (case-insensitive) and name."""
    o, p = c.order, c.payment
    agree = same_id(o.buyer_id_number, p.payer_id_number) and same(o.buyer_name, p.payer_name)
    return None if agree else BUYER_PAYER_MISMATCH


def platform(c: Comparison) -> str | None:
    """Order and payment name the same platform."""
    return None if same(c.order.ebp_code, c.payment.ebp_code) else PLATFORM_MISMATCH


def payment_reference(c: Comparison) -> str | None:
    """A payTransactionId or payCode the order names matches the payment."""
    o, p = c.order, c.payment
    tx, code = o.pay_transaction_id, o.pay_code
    if (tx and norm(tx) and not same(tx, p.pay_transaction_id)) or (code and norm(code) and not same(code, p.pay_code)):
        return PAYMENT_REFERENCE_MISMATCH
    return None


def consignee(c: Comparison) -> str | None:
    """Consignee name, telephone and address agree between order and waybill."""
    o, w = c.order, c.waybill
    agree = (
        same(o.consignee, w.consignee)
        and same(o.consignee_telephone, w.consignee_telephone)
        and same(o.consignee_address, w.consignee_address)
    )
    return None if agree else CONSIGNEE_MISMATCH


def freight(c: Comparison) -> str | None:
    """Order and waybill state the same freight."""
    return FREIGHT_MISMATCH if c.order.freight != c.waybill.freight else None


def id_number(c: Comparison) -> str | None:
    """The buyer ID is a valid GB 11643 resident ID, born by the order day."""
    o = c.order
    return None if is_valid_resident_id(norm_id(o.buyer_id_number), o.app_time[:8]) else INVALID_ID_NUMBER


def tax(c: Comparison) -> str | None:
    """The tax: taxTotal = dutiable value x rate, half-up to the fen."""
    return TAX_MISMATCH if c.order.tax_total != c.tax else None


def single_limit(c: Comparison) -> str | None:
    """The dutiable value is within the single-transaction limit."""
    return SINGLE_LIMIT_EXCEEDED if c.dutiable > c.config.single_limit_fen else None


def positive_list(c: Comparison) -> str | None:
    """Every item's HS code (first 8 digits) is on the positive list."""
    allowed = c.config.positive_list
    return None if all(item.gcode[:8] in allowed for item in c.order.items) else NOT_ON_POSITIVE_LIST


Rule = Callable[[Comparison], str | None]

RULES: tuple[Rule, ...] = (
    amount_formula,
    item_totals,
    paid_amount,
    buyer_payer,
    platform,
    payment_reference,
    consignee,
    freight,
    id_number,
    tax,
    single_limit,
    positive_list,
)


def evaluate(c: Comparison) -> tuple[str, ...]:
    """All reason codes that apply, sorted: the rules above, fused into one pass.

    The same verdicts as `evaluate_each` (tests/pipeline/helpers.py checks both on every
    rule test); one function over local variables instead of twelve calls, a generator
    and a sort, because this runs once per complete order (issue 12: it was 12% of
    `clearance run`). The common case of identical text skips normalisation.
    """
    o, p, w, config = c.order, c.payment, c.waybill, c.config
    codes: list[str] = []
    goods = o.goods_value
    if o.actural_paid != goods + o.freight + o.tax_total - o.discount:
        codes.append(AMOUNT_FORMULA_MISMATCH)
    allowed = config.positive_list
    bad_total = off_list = False
    total = 0
    for _, _, _, gcode, qty, _, price, item_total, _ in o.items:
        if item_total != (price * qty if type(qty) is int else mul_round_half_up(price, qty)):
            bad_total = True
        total += item_total
        if gcode[:8] not in allowed:
            off_list = True
    if bad_total or total != goods:
        codes.append(ITEM_TOTAL_MISMATCH)
    if o.actural_paid != p.amount_paid:
        codes.append(PAID_AMOUNT_MISMATCH)
    if not (same_id(o.buyer_id_number, p.payer_id_number) and same(o.buyer_name, p.payer_name)):
        codes.append(BUYER_PAYER_MISMATCH)
    if o.ebp_code != p.ebp_code and norm(o.ebp_code) != norm(p.ebp_code):
        codes.append(PLATFORM_MISMATCH)
    tx, code = o.pay_transaction_id, o.pay_code
    if (tx and tx != p.pay_transaction_id and norm(tx) and norm(tx) != norm(p.pay_transaction_id)) or (
        code and code != p.pay_code and norm(code) and norm(code) != norm(p.pay_code)
    ):
        codes.append(PAYMENT_REFERENCE_MISMATCH)
    if not (
        same(o.consignee, w.consignee)
        and same(o.consignee_telephone, w.consignee_telephone)
        and same(o.consignee_address, w.consignee_address)
    ):
        codes.append(CONSIGNEE_MISMATCH)
    if o.freight != w.freight:
        codes.append(FREIGHT_MISMATCH)
    if not is_valid_resident_id(norm_id(o.buyer_id_number), o.app_time[:8]):
        codes.append(INVALID_ID_NUMBER)
    if o.tax_total != c.tax:
        codes.append(TAX_MISMATCH)
    if c.dutiable > config.single_limit_fen:
        codes.append(SINGLE_LIMIT_EXCEEDED)
    if off_list:
        codes.append(NOT_ON_POSITIVE_LIST)
    if not codes:
        return ()
    codes.sort()
    return tuple(codes)


def evaluate_each(c: Comparison) -> tuple[str, ...]:
    """All reason codes that apply, sorted, one rule function at a time (the reference)."""
    return tuple(sorted(code for rule in RULES if (code := rule(c)) is not None))
