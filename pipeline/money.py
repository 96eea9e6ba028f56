"""Money in integer fen (CNY 0.01). Never binary floating point.

A money value on the wire is a JSON number or a decimal string, >= 0, with at
most two decimals (see `pipeline.patterns.MONEY_STRING_PATTERN`). JSON numbers
arrive from the decoder as int or float; a float is read through its shortest repr,
which is the decimal text the sender wrote, so 0.07 is 7 fen and never 6.99...
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Final

from pipeline.errors import InvalidRecord

MAX_YUAN = 999_999_999_999
_STRING_RULE: Final = "money string must be yuan with at most 2 decimals, like 12.30"


def parse_money(value: object, field: str) -> int:
    """Return the value in fen, or raise InvalidRecord naming `field`."""
    if type(value) is int:
        if 0 <= value <= MAX_YUAN:
            return value * 100
        raise InvalidRecord("money out of range 0..999999999999.99", field)
    if type(value) is float:
        return _float_fen(value, field)
    if type(value) is str:
        fen = _string_fen(value)
        if fen >= 0:
            return fen
        raise InvalidRecord(_STRING_RULE, field)
    raise InvalidRecord(f"money must be a number or a decimal string, not {json_type(value)}", field)


def _float_fen(value: float, field: str) -> int:
    if not 0.0 <= value <= 999_999_999_999.99:
        raise InvalidRecord("money out of range 0..999999999999.99", field)
    # Below 2**53 / 100 every amount in fen is exact as a float, so `fen` recovers the
    # sender's cents, and `fen / 100` (correctly rounded) is the very same float only
    # when the sender wrote at most two decimals. Same verdict as Decimal(repr(value)).
    fen = round(value * 100)
    if fen / 100 != value:
        raise InvalidRecord("money has more than 2 decimals", field)
    return fen


# Valid money values already seen -> fen: prices, freights and totals repeat (a catalogue,
# "0.00"), and a dict lookup is ~10x cheaper than the string pattern plus the conversion.
# 1 == 1.0 == -0.0 + 1 as keys is fine: equal numbers are equal amounts (msgspec never
# passes a bool here). Bounded: cleared when full.
KNOWN_FEN: Final[dict[int | float | str, int]] = {}
_KNOWN_LIMIT = 1 << 14  # ~2 MB when full; at 1 << 17 it was ~18 MB of a worker's heap (the soak)


def remember_fen(value: int | float | str) -> int:
    """Fen of a money value msgspec has typed and ranged (`pipeline.documents.Money`), remembered.

    Raises InvalidRecord (field "money": the caller names the field) for a string that is
    not yuan with at most two decimals, or a number with more than two.
    """
    if type(value) is str:
        fen = _string_fen(value)
        if fen < 0:
            raise InvalidRecord(_STRING_RULE, "money")
    else:
        fen = parse_money(value, "money")
    if len(KNOWN_FEN) >= _KNOWN_LIMIT:
        KNOWN_FEN.clear()
    KNOWN_FEN[value] = fen
    return fen


def _string_fen(text: str) -> int:
    """Fen of a money string, -1 unless it matches `pipeline.patterns.MONEY_STRING_PATTERN`.

    The pattern checked by hand (an `re` match was a third of a remembered value's cost;
    tests/pipeline/test_money.py checks they agree):
    ASCII digits, no leading zero, at most 12 before the point, 1 or 2 after it.
    """
    yuan, point, cents = text.partition(".")
    if not (yuan.isascii() and yuan.isdigit() and len(yuan) <= 12) or (yuan[0] == "0" and len(yuan) > 1):
        return -1
    if not point:
        return int(yuan) * 100
    if not (0 < len(cents) <= 2 and cents.isascii() and cents.isdigit()):
        return -1
    return int(yuan) * 100 + (int(cents) * 10 if len(cents) == 1 else int(cents))


_CENTS: Final = tuple(f"{cents:02d}" for cents in range(100))  # a format spec per call cost 6x more


def format_fen(fen: int) -> str:
    """Format fen as a decimal string with exactly two decimals: 1234 -> '12.34'."""
    if fen >= 0:  # every published amount
        return f"{fen // 100}.{_CENTS[fen % 100]}"
    whole, cents = divmod(-fen, 100)
    return f"-{whole}.{cents:02d}"


def mul_round_half_up(fen: int, factor: int | Decimal) -> int:
    """`fen x factor`, rounded half-up (ties away from zero) to the fen. Exact: integers only.

    A Decimal factor is used as its exact ratio num/den, so no Decimal context (28 digits)
    can round the product before the half-up step.
    """
    if type(factor) is int:
        return fen * factor
    num, den = _ratio(factor)
    product = fen * num
    rounded = (abs(product) * 2 + den) // (2 * den)
    return -rounded if product < 0 else rounded


@lru_cache(maxsize=4096)
def _ratio(factor: Decimal) -> tuple[int, int]:
    return factor.as_integer_ratio()


def forget() -> None:
    """Empty this module's memo caches: the money map and the ratios (pipeline/memo.py)."""
    KNOWN_FEN.clear()
    _ratio.cache_clear()


def json_type(value: object) -> str:
    """The JSON type name of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
