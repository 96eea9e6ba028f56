from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InvalidRecord
from pipeline.money import format_fen, mul_round_half_up, parse_money, remember_fen
from pipeline.patterns import MONEY_STRING_PATTERN


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


@given(
    fen=st.integers(-(10**14), 10**14),
    factor=st.one_of(
        st.integers(0, 10**6),
        st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0, max_value=10**6, allow_nan=False).map(lambda f: Decimal(repr(f))),
    ),
)
def test_mul_round_half_up_is_exact(fen: int, factor: int | Decimal) -> None:
    # The reference: Decimal with enough digits that nothing rounds before the half-up step.
    with localcontext() as ctx:
        ctx.prec = 100
        expected = int((Decimal(fen) * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert mul_round_half_up(fen, factor) == expected


_MONEY_TEXT = st.one_of(
    st.text(alphabet="0123456789.", max_size=16),
    st.text(max_size=6),  # any character: other digits ("１", "²"), signs, spaces
    st.sampled_from(["0", "00", "01", "0.5", ".5", "5.", "12.345", "999999999999.99", "1000000000000"]),
)


@given(_MONEY_TEXT)
def test_a_money_string_is_checked_as_the_pattern_checks_it(text: str) -> None:
    """parse_money and remember_fen check a string by hand: they accept exactly what the schema's
    pattern accepts, with the fen of the decimal text."""
    if re.fullmatch(MONEY_STRING_PATTERN.removeprefix("^").removesuffix("$"), text):
        fen = int(Decimal(text) * 100)
        assert parse_money(text, "x") == fen
        assert remember_fen(text) == fen
    else:
        with pytest.raises(InvalidRecord, match="yuan with at most 2 decimals"):
            parse_money(text, "x")
        with pytest.raises(InvalidRecord):
            remember_fen(text)


@pytest.mark.parametrize("fen", [0, 1, 9, 10, 99, 100, 101, 1234, 99_999_999_999_999, -1, -101])
def test_format_fen_pads_the_cents(fen: int) -> None:
    whole, cents = divmod(abs(fen), 100)
    assert format_fen(fen) == ("-" if fen < 0 else "") + f"{whole}.{cents:02d}"
