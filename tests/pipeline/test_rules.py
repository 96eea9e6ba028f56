"""Every rule of docs/CONTRACT.md with its edge cases: 1 fen off, exactly at the limit, NFKC, x/X."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from pipeline.config import REGIMES
from tests.fixtures import docs
from tests.fixtures.docs import resident_id
from tests.pipeline.helpers import CONFIG, POSITIVE, reasons


def test_the_fixture_trio_is_clean() -> None:
    assert reasons() == ()


def _order(**over: Any) -> dict[str, Any]:
    return docs.order(**over)


@pytest.mark.parametrize(
    ("order_over", "payment_over", "waybill_over", "expected"),
    [
        # AMOUNT_FORMULA: 1 fen off; payment follows so only the formula breaks
        ({"acturalPaid": "338.22"}, {"amountPaid": "338.22"}, {}, ("AMOUNT_FORMULA_MISMATCH",)),
        # discount is subtracted
        ({"discount": "0.01", "acturalPaid": "338.20"}, {"amountPaid": "338.20"}, {}, ()),
        # PAID_AMOUNT: 1 fen off either way
        ({}, {"amountPaid": "338.20"}, {}, ("PAID_AMOUNT_MISMATCH",)),
        ({}, {"amountPaid": 338.22}, {}, ("PAID_AMOUNT_MISMATCH",)),
        # number and string forms of the same amount are equal
        ({}, {"amountPaid": "338.21"}, {}, ()),
        ({"acturalPaid": 338.21}, {"amountPaid": 338.21}, {}, ()),
        # BUYER_PAYER: ID number, name; x/X and NFKC/whitespace are equal
        ({}, {"payerIdNumber": resident_id("11010519491231002")}, {}, ("BUYER_PAYER_MISMATCH",)),
        ({}, {"payerName": "李四"}, {}, ("BUYER_PAYER_MISMATCH",)),
        ({}, {"payerName": " 张三 "}, {}, ()),
        ({}, {"payerIdNumber": docs.BUYER_ID.lower()}, {}, ()),
        # PLATFORM
        ({}, {"ebpCode": "3301960002"}, {}, ("PLATFORM_MISMATCH",)),
        # PAYMENT_REFERENCE: transaction id or pay code named by the order
        ({}, {"payTransactionId": "2026111122001400002"}, {}, ("PAYMENT_REFERENCE_MISMATCH",)),
        ({}, {"payCode": "312226T002"}, {}, ("PAYMENT_REFERENCE_MISMATCH",)),
        ({"payTransactionId": None, "payCode": None}, {"payCode": "X", "payTransactionId": "Y"}, {}, ()),
        ({"payTransactionId": ""}, {"payTransactionId": "other"}, {}, ()),
        # CONSIGNEE: each field; full-width digits and doubled spaces are equal
        ({}, {}, {"consignee": "王五"}, ("CONSIGNEE_MISMATCH",)),
        ({}, {}, {"consigneeTelephone": "13800138001"}, ("CONSIGNEE_MISMATCH",)),
        ({}, {}, {"consigneeAddress": "浙江省杭州市西湖区文三路 91 号"}, ("CONSIGNEE_MISMATCH",)),
        ({}, {}, {"consigneeTelephone": "１３８００１３８０００"}, ()),
        ({}, {}, {"consigneeAddress": "浙江省杭州市西湖区文三路  90  号 "}, ()),
        ({}, {}, {"consigneeAddress": "浙江省杭州市西湖区文三路\u300090\u3000号"}, ()),
        # FREIGHT
        ({}, {}, {"freight": "10.01"}, ("FREIGHT_MISMATCH",)),
        ({}, {}, {"freight": 10}, ()),
    ],
)
def test_document_mismatches(
    order_over: dict[str, Any], payment_over: dict[str, Any], waybill_over: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert reasons(_order(**order_over), docs.payment(**payment_over), docs.waybill(**waybill_over)) == expected


def _items(price: Any, qty: Any, total: Any) -> list[dict[str, Any]]:
    return [{"gnum": 1, "itemName": "面霜", "gcode": "3304990000", "qty": qty, "price": price, "totalPrice": total}]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (_items("100.00", 3, "300.00"), ()),
        (_items("100.00", 3, "300.01"), ("ITEM_TOTAL_MISMATCH",)),  # line and sum both off
        # half-up to the fen: 0.125 x 2400 = 300.00; 33.335 is not money, use qty
        (_items("120.00", 2.5, "300.00"), ()),
        (_items("0.03", 0.5, "0.02"), ("ITEM_TOTAL_MISMATCH",)),  # 0.015 -> 0.02 half-up; sum breaks
    ],
)
def test_item_totals(items: list[dict[str, Any]], expected: tuple[str, ...]) -> None:
    assert reasons(_order(items=items)) == expected


def test_item_total_rounds_half_up_not_to_even() -> None:
    # price 0.05 x qty 0.5 = 0.025 -> 0.03 half-up (banker's rounding would give 0.02)
    items = _items("0.05", 0.5, "0.03") + [
        {"gnum": 2, "itemName": "x", "gcode": "3304990000", "qty": 1, "price": "299.97", "totalPrice": "299.97"}
    ]
    assert reasons(_order(items=items)) == ()
    items[0]["totalPrice"] = "0.02"
    items[1]["totalPrice"] = items[1]["price"] = "299.98"
    assert reasons(_order(items=items)) == ("ITEM_TOTAL_MISMATCH",)


def test_items_sum_must_equal_goods_value() -> None:
    assert reasons(_order(goodsValue="300.01", acturalPaid="338.22"), docs.payment(amountPaid="338.22")) == (
        "ITEM_TOTAL_MISMATCH",
    )


@pytest.mark.parametrize(
    ("id_number", "valid"),
    [
        (docs.BUYER_ID, True),
        (docs.BUYER_ID[:17] + ("0" if docs.BUYER_ID[17] != "0" else "1"), False),  # wrong check char
        (resident_id("11010519491231002"), True),  # the GB 11643 example, check X
        (resident_id("11010519491231002").lower(), True),  # x = X
        (resident_id("11010520230230001"), False),  # Feb 30
        (resident_id("11010520000229001"), True),  # leap day
        (resident_id("11010519000229001"), False),  # 1900 is not a leap year
        (resident_id("11010520261111001"), True),  # born on the order day
        (resident_id("11010520261112001"), False),  # born after the order
        ("11010519491231002", False),  # 17 characters
        ("1101051949123100X2", False),
        ("１１０１０５１９４９１２３１００２Ｘ", True),  # full-width is NFKC-equal
    ],
)
def test_invalid_id_number(id_number: str, valid: bool) -> None:
    result = reasons(_order(buyerIdNumber=id_number), docs.payment(payerIdNumber=id_number))
    assert result == (() if valid else ("INVALID_ID_NUMBER",))


def _priced(goods_fen: int, freight_fen: int, rate_per_mille: int = 91) -> dict[str, Any]:
    """An order whose money is consistent for a given goods value and freight."""
    dutiable = goods_fen + freight_fen
    tax = (dutiable * rate_per_mille + 500) // 1000
    paid = dutiable + tax

    def y(fen: int) -> str:
        return f"{fen // 100}.{fen % 100:02d}"

    items = [
        {
            "gnum": 1,
            "itemName": "面霜",
            "gcode": "3304990000",
            "qty": 1,
            "price": y(goods_fen),
            "totalPrice": y(goods_fen),
        }
    ]
    return {
        "goodsValue": y(goods_fen),
        "freight": y(freight_fen),
        "taxTotal": y(tax),
        "acturalPaid": y(paid),
        "items": items,
        "_paid": y(paid),
        "_freight": y(freight_fen),
    }


def _priced_reasons(goods_fen: int, freight_fen: int, config: Any = CONFIG, per_mille: int = 91) -> tuple[str, ...]:
    over = _priced(goods_fen, freight_fen, per_mille)
    paid, freight = over.pop("_paid"), over.pop("_freight")
    return reasons(_order(**over), docs.payment(amountPaid=paid), docs.waybill(freight=freight), config=config)


def test_tax_half_up_and_one_fen_off() -> None:
    # 310.00 x 9.1% = 28.21 exactly; 5.50 x 9.1% = 0.5005 -> 0.50; 15.00 x 9.1% = 1.365 -> 1.37 (half-up)
    assert _priced_reasons(1500, 0) == ()
    o = _priced(1500, 0)
    o.pop("_paid"), o.pop("_freight")
    assert o["taxTotal"] == "1.37"
    o.update(taxTotal="1.36", acturalPaid="16.36")
    assert reasons(_order(**o), docs.payment(amountPaid="16.36"), docs.waybill(freight="0")) == ("TAX_MISMATCH",)


def test_single_limit_exactly_at_and_one_fen_over() -> None:
    assert _priced_reasons(499_000, 1_000) == ()  # dutiable 5,000.00: at the limit
    assert _priced_reasons(499_001, 1_000) == ("SINGLE_LIMIT_EXCEEDED",)


def test_2016_regime_limits_and_rate() -> None:
    config = replace(REGIMES["2016"], positive_list=POSITIVE)
    assert _priced_reasons(199_000, 1_000, config, per_mille=119) == ()
    assert _priced_reasons(199_001, 1_000, config, per_mille=119) == ("SINGLE_LIMIT_EXCEEDED",)
    assert config.tax_rate == Decimal("0.119")


@pytest.mark.parametrize(
    ("gcode", "on_list"),
    [("3304990000", True), ("3304990099", True), ("9303200000", False), ("2402200000", False), ("3304990100", False)],
)
def test_positive_list(gcode: str, on_list: bool) -> None:
    items = [{"gnum": 1, "itemName": "x", "gcode": gcode, "qty": 3, "price": "100.00", "totalPrice": "300.00"}]
    assert reasons(_order(items=items)) == (() if on_list else ("NOT_ON_POSITIVE_LIST",))


def test_required_codes_on_the_shipped_positive_list() -> None:
    for code in ("33049900", "33051000", "19011010", "21069090", "96190011", "04022100", "85098000", "42022200"):
        assert code in POSITIVE
    assert not any(code.startswith(("93", "2402")) for code in POSITIVE)


def test_several_reasons_are_all_reported_sorted() -> None:
    got = reasons(_order(), docs.payment(amountPaid="1.00", ebpCode="XXXXXXXXXX"), docs.waybill(freight="0"))
    assert got == ("FREIGHT_MISMATCH", "PAID_AMOUNT_MISMATCH", "PLATFORM_MISMATCH")
    assert list(got) == sorted(got)


def test_config_is_used() -> None:
    assert CONFIG.single_limit_fen == 500_000 and CONFIG.annual_limit_fen == 2_600_000
