"""GB 11643 resident ID numbers: 17 digits and an ISO 7064 MOD 11-2 check character."""

from __future__ import annotations

from functools import lru_cache
from operator import mul

# ISO 7064 MOD 11-2: the weight of each of the 17 digits, and the check character of (weighted sum % 11).
CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


_ZERO_WEIGHT = ord("0") * sum(CHECK_WEIGHTS)


def check_character(first17: str) -> str:
    """The check character for 17 ASCII digits.

    Their bytes are the digits plus ord("0"), so the weighted sum of the bytes less
    ord("0") times the weights' sum is the weighted sum of the digits, with no int() per digit.
    """
    if len(first17) == 17 and first17.isascii() and first17.isdigit():
        return CHECK_CHARACTERS[(sum(map(mul, first17.encode(), CHECK_WEIGHTS)) - _ZERO_WEIGHT) % 11]
    return CHECK_CHARACTERS[sum(map(mul, map(int, first17), CHECK_WEIGHTS)) % 11]  # as before for anything else


@lru_cache(maxsize=1 << 12)  # buyers repeat; the check is pure. Small: it keeps ID numbers in memory
def is_valid_resident_id(id_number: str, on_or_before: str) -> bool:
    """True for a valid 18-character resident ID born on or before `on_or_before`.

    Args:
        id_number: normalised (NFKC, trimmed, upper case) ID number.
        on_or_before: YYYYMMDD; the birth date may not be after it (the order's day).
    """
    if len(id_number) != 18 or not id_number.isascii() or not id_number[:17].isdigit():
        return False
    if id_number[17] != check_character(id_number[:17]):
        return False
    birth = id_number[6:14]
    return _is_real_date(birth) and birth <= on_or_before


def _is_real_date(yyyymmdd: str) -> bool:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])
    if year < 1 or not 1 <= month <= 12 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month - 1] + (1 if month == 2 and leap else 0)
