"""The numpy core of the trace generator: arrival times, people, items and money.

Everything is vectorised over all orders; money is integer fen throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracegen import text as T
from tracegen import vocab as V

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = "10X98765432"
_POW10 = 10 ** np.arange(16, -1, -1, dtype=np.int64)
_CHECK_CODES = np.array([ord(c) for c in _ID_CHECK], dtype=np.uint32)


@dataclass(frozen=True, slots=True)
class Regime:
    name: str
    single_limit_fen: int
    annual_limit_fen: int
    tax_permille: int  # 91 = 9.1 %

    def tax(self, dutiable: np.ndarray) -> np.ndarray:
        """Half-up to the fen, integer arithmetic only."""
        return (dutiable * self.tax_permille + 500) // 1000


REGIMES = {"2016": Regime("2016", 200_000, 2_000_000, 119), "2019": Regime("2019", 500_000, 2_600_000, 91)}


@dataclass(slots=True)
class People:
    """Persons by index: buyers, consignees and payers are all drawn from here."""

    name: np.ndarray
    id_number: np.ndarray
    phone: np.ndarray
    address: np.ndarray


@dataclass(slots=True)
class Orders:
    """Column arrays, one entry per order (items: flat arrays with `item_start`)."""

    t_order: np.ndarray
    buyer: np.ndarray
    consignee: np.ndarray
    platform: np.ndarray
    seller: np.ndarray
    pay_company: np.ndarray
    logistics: np.ndarray
    freight: np.ndarray
    discount: np.ndarray
    t_pay: np.ndarray
    t_payment: np.ndarray
    t_waybill: np.ndarray
    weight_g: np.ndarray
    item_start: np.ndarray
    gcode: list[str]
    item_name: list[str]
    price: np.ndarray
    qty10: np.ndarray
    total: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def sample_times(rng: np.random.Generator, rate: np.ndarray, n: int) -> np.ndarray:
    """n sorted second offsets drawn from a per-second rate curve (inverse CDF)."""
    cdf = np.cumsum(rate, dtype=np.float64)
    u = rng.random(n) * cdf[-1]
    return np.sort(np.searchsorted(cdf, u, side="right").astype(np.int64))


def day_rate(seconds: int, spike: float, tau_s: float, hourly: np.ndarray) -> np.ndarray:
    """Rate per second: an hourly base profile plus a decaying midnight spike.

    `spike` is the peak rate as a multiple of the profile's mean.
    """
    t = np.arange(seconds, dtype=np.float64)
    base = np.interp(t / 3600.0, np.arange(len(hourly)), hourly)
    mean = base.mean()
    rate: np.ndarray = base + spike * mean * np.exp(-t / tau_s)
    return rate


def make_people(rng: np.random.Generator, n: int, first_birth: str, last_birth: str) -> People:
    """n persons with valid GB 11643 IDs born between the two YYYY-MM-DD dates."""
    region = rng.integers(0, len(V.REGIONS), n)
    lo, hi = np.datetime64(first_birth), np.datetime64(last_birth)
    birth = lo + rng.integers(0, int((hi - lo).astype(int)) + 1, n).astype("timedelta64[D]")
    ymd = birth.astype("datetime64[D]").astype(str)
    birth_num = np.char.replace(ymd, "-", "").astype(np.int64)
    region_num = np.array([int(r[0]) for r in V.REGIONS], dtype=np.int64)[region]
    first17 = region_num * 10**11 + birth_num * 1000 + rng.integers(0, 1000, n)
    ids = T.compose(n, [T.digits(first17, 17), (_CHECK_CODES[check_index(first17)][:, None], 1)])
    combos = [a + b for a in V.SURNAMES for b in V.GIVEN]
    names = T.table(combos, rng.integers(0, len(combos), n))
    prefix = np.array([int(p) for p in V.MOBILE_PREFIXES], dtype=np.int64)[rng.integers(0, len(V.MOBILE_PREFIXES), n)]
    phones = T.compose(n, [T.digits(prefix * 10**8 + rng.integers(0, 10**8, n), 11)])
    places = T.table([r[1] + " " for r in V.REGIONS], region) + T.table(V.STREETS, rng.integers(0, len(V.STREETS), n))
    house = T.compose(n, [T.digits(rng.integers(1, 600, n)), T.const("号 "), T.digits(rng.integers(1, 20, n))])
    room = T.compose(n, [T.const("幢"), T.digits(rng.integers(1, 30, n) * 100 + rng.integers(1, 5, n)), T.const("室")])
    addrs = places + house + room
    return People(names, ids, phones, addrs)


def check_index(first17: np.ndarray) -> np.ndarray:
    """Index into "10X98765432" (ISO 7064 MOD 11-2) of 17-digit integers."""
    digits = (first17[:, None] // _POW10[None, :]) % 10
    index: np.ndarray = (digits * _ID_WEIGHTS).sum(axis=1) % 11
    return index


def make_items(
    rng: np.random.Generator, n: int, codes: list[str], mean_yuan: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item_start, gcodes, names, price fen, qty in tenths) for n orders of 1-4 items."""
    counts = rng.choice(4, n, p=[0.55, 0.25, 0.12, 0.08]) + 1
    start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    m = int(start[-1])
    code_idx = rng.integers(0, len(codes), m)
    suffix = rng.integers(0, 3, m)
    full = [c + sfx for c in codes for sfx in ("00", "10", "90")]
    gcodes = T.table(full, code_idx * 3 + suffix)
    pick = rng.integers(0, 1 << 30, m)
    options = [V.ITEM_NAMES.get(c[:4], ("跨境商品",)) for c in codes]
    flat = [o for opts in options for o in opts]
    first = np.cumsum([0] + [len(o) for o in options])[:-1]
    sizes = np.array([len(o) for o in options])
    names = T.table(flat, first[code_idx] + pick % sizes[code_idx])
    price = np.maximum(100, np.round(rng.lognormal(np.log(mean_yuan * 60), 0.8, m))).astype(np.int64)
    qty = rng.choice([10, 10, 10, 10, 20, 20, 30, 5, 15, 25], m).astype(np.int64)
    return start, gcodes, names, price, qty


def item_totals(price: np.ndarray, qty10: np.ndarray) -> np.ndarray:
    """price x qty, half-up to the fen (qty in tenths)."""
    total: np.ndarray = (price * qty10 + 5) // 10
    return total


def fit_under(price: np.ndarray, qty10: np.ndarray, start: np.ndarray, freight: np.ndarray, cap: int) -> np.ndarray:
    """Scale item prices down until every order's dutiable value is <= cap fen."""
    price = price.copy()
    for _ in range(20):
        goods = np.add.reduceat(item_totals(price, qty10), start[:-1])
        over = goods + freight > cap
        if not over.any():
            return price
        per_item = np.repeat(over, np.diff(start))
        price[per_item] = np.maximum(1, price[per_item] * 6 // 10)
    raise RuntimeError("could not fit orders under the single limit")
