from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.errors import InvalidRecord
from pipeline.money import format_fen, mul_round_half_up, parse_money


@pytest.mark.parametrize(
    ("value", "fen"),
    [
        (0, 0),
        (12, 1200),
        (0.07, 7),
        (0.1, 10),
        (338.21, 33821),
        (1e3, 100000),
        ("0", 0),
        ("0.5", 50),
        ("12.30", 1230),
        ("999999999999.99", 99999999999999),
        (999999999999.99, 99999999999999),
        (-0.0, 0),
    ],
)
def test_parse_money_exact(value: object, fen: int) -> None:
    assert parse_money(value, "m") == fen


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.01,
        12.345,
        0.001,
        "12.345",
        "-1",
        "01.5",
        "1e3",
        " 12",
        "12.",
        ".5",
        "",
        True,
        None,
        [],
        {},
        1_000_000_000_000,
        1e13,
        "1000000000000",
    ],
)
def test_parse_money_rejects(value: object) -> None:
    with pytest.raises(InvalidRecord) as err:
        parse_money(value, "goodsValue")
    assert err.value.field == "goodsValue" and err.value.reason.startswith("goodsValue:")


def test_format_and_round_half_up() -> None:
    assert format_fen(0) == "0.00" and format_fen(5) == "0.05" and format_fen(123456) == "1234.56"
    assert mul_round_half_up(1500, Decimal("0.091")) == 137  # 136.5 -> 137
    assert mul_round_half_up(5, Decimal("0.5")) == 3  # 2.5 -> 3, not banker's 2
    assert mul_round_half_up(31000, Decimal("0.091")) == 2821
