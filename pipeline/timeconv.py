"""Event time: CBEC `YYYYMMDDhhmmss` (China Standard Time, UTC+8) <-> epoch milliseconds.

Pure integer arithmetic (no datetime on the hot path); the pattern check is done by
the parser, so every string reaching `app_time_ms` is a real calendar instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Final

CST = timezone(timedelta(hours=8), "CST")
_CST_OFFSET_S: Final = 8 * 3600


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@lru_cache(maxsize=1 << 12)  # behind parsing's own map of known times
def app_time_ms(text: str) -> int:
    """Epoch milliseconds of a valid `YYYYMMDDhhmmss` CST string."""
    days = _days_from_civil(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    seconds = days * 86400 + int(text[8:10]) * 3600 + int(text[10:12]) * 60 + int(text[12:14])
    return (seconds - _CST_OFFSET_S) * 1000


@lru_cache(maxsize=1 << 12)
def iso_cst(ms: int) -> str:
    """ISO-8601 with the +08:00 offset, to the second: 2026-11-11T00:00:05+08:00."""
    return datetime.fromtimestamp(ms // 1000, CST).isoformat()


_MILLIS: Final = tuple(f"{millis:03d}" for millis in range(1000))  # cheaper than a format spec per call


def iso_utc_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and Z: 2026-11-26T20:01:02.345Z."""
    return f"{_utc_second(ms // 1000)}.{_MILLIS[ms % 1000]}Z"


@lru_cache(maxsize=256)
def _utc_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=1 << 12)
def cst_year(ms: int) -> int:
    """The calendar year (CST) of an instant."""
    return datetime.fromtimestamp(ms // 1000, CST).year


def cst_date(ms: int) -> str:
    """YYYYMMDD (CST) of an instant."""
    return datetime.fromtimestamp(ms // 1000, CST).strftime("%Y%m%d")


def forget() -> None:
    """Empty this module's memo caches (pipeline/memo.py)."""
    for memoised in (app_time_ms, iso_cst, _utc_second, cst_year):
        memoised.cache_clear()
