"""pipeline.memo: every memo cache of the core empties at once, and nothing parsed changes."""

from __future__ import annotations

from decimal import Decimal

from pipeline import idcard, memo, money, parsing, timeconv
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from tests.fixtures import docs


def _parse_all() -> tuple[object, ...]:
    order = parse_order(docs.raw(docs.order()))
    return (
        order,
        parse_payment(docs.raw(docs.payment())),
        parse_waybill(docs.raw(docs.waybill())),
        idcard.is_valid_resident_id(docs.BUYER_ID, "20261111"),
        money.mul_round_half_up(1005, Decimal("1.5")),
        timeconv.iso_cst(order.app_time_ms),
        timeconv.cst_year(order.app_time_ms),
        timeconv.iso_utc_ms(order.app_time_ms),
    )


def _sizes() -> dict[str, int]:
    return {
        "money": len(money.KNOWN_FEN),
        "ratios": money._ratio.cache_info().currsize,  # noqa: SLF001
        "times": len(parsing._KNOWN_TIMES),  # noqa: SLF001 - what forget() must empty
        "id checks": idcard.is_valid_resident_id.cache_info().currsize,
        "app times": timeconv.app_time_ms.cache_info().currsize,
        "iso": timeconv.iso_cst.cache_info().currsize,
        "years": timeconv.cst_year.cache_info().currsize,
        "utc": timeconv._utc_second.cache_info().currsize,  # noqa: SLF001
    }


def test_forget_empties_every_cache_and_the_results_stay() -> None:
    before = _parse_all()
    assert all(_sizes().values()), _sizes()  # each cache holds something to forget
    memo.forget()
    assert set(_sizes().values()) == {0}
    assert _parse_all() == before
