"""Parse fixture dicts into records and run the rules on them."""

from __future__ import annotations

from typing import Any

from clearance.settings import DEFAULT_POSITIVE_LIST, load_positive_list
from pipeline.config import RulesConfig
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.records import Order, Payment, Waybill
from pipeline.rules import compare, evaluate, evaluate_each
from tests.fixtures import docs

POSITIVE = load_positive_list(DEFAULT_POSITIVE_LIST)
CONFIG = RulesConfig(positive_list=POSITIVE)


def records(o: dict[str, Any], p: dict[str, Any], w: dict[str, Any]) -> tuple[Order, Payment, Waybill]:
    return parse_order(docs.raw(o)), parse_payment(docs.raw(p)), parse_waybill(docs.raw(w))


def reasons(
    o: dict[str, Any] | None = None,
    p: dict[str, Any] | None = None,
    w: dict[str, Any] | None = None,
    config: RulesConfig = CONFIG,
) -> tuple[str, ...]:
    order, payment, waybill = records(o or docs.order(), p or docs.payment(), w or docs.waybill())
    comparison = compare(order, payment, waybill, config)
    fused = evaluate(comparison)
    assert fused == evaluate_each(comparison), "the fused rules disagree with the rule functions"
    return fused
