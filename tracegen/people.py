"""Who takes part: persons with valid GB 11643 IDs, repeat buyers and consignees."""

from __future__ import annotations

import numpy as np

from pipeline.idcard import CHECK_CHARACTERS, CHECK_WEIGHTS
from tracegen.presets import Regime
from tracegen.tables import Ints, Money, Parties, People, Texts
from tracegen.text import compose, const, digits, table
from tracegen.vocab import GIVEN, MOBILE_PREFIXES, REGIONS, STREETS, SURNAMES

_WEIGHTS = np.array(CHECK_WEIGHTS, dtype=np.int64)
_POW10 = 10 ** np.arange(16, -1, -1, dtype=np.int64)
_CHECK_CODES = np.array([ord(c) for c in CHECK_CHARACTERS], dtype=np.uint32)


def parties(rng: np.random.Generator, t: Ints, money: Money, *, groups: list[list[int]], regime: Regime) -> Parties:
    """Buyers and consignees of orders placed at `t`; each quota group (`groups`) is one buyer."""
    n = len(t)
    buyer = assign_buyers(rng, t, money.dutiable, regime.annual_limit_fen // 2)
    top = int(buyer.max()) + 1
    for g, members in enumerate(groups):
        buyer[members] = top + g
    n_people = int(buyer.max()) + 1 + n // 10
    people = make_people(rng, n_people, "1960-01-01", "2005-12-31")
    consignee = np.where(rng.random(n) < 0.8, buyer, rng.integers(0, n_people, n))
    return Parties(people=people, buyer=buyer, consignee=consignee)


def assign_buyers(rng: np.random.Generator, t: Ints, dutiable: Ints, cap: int) -> Ints:
    """Zipf-like repeat buyers; orders past `cap` fen of a buyer's total go to new buyers."""
    n = len(t)
    counts = np.minimum(rng.zipf(2.2, n), 20)
    nb = int(np.searchsorted(np.cumsum(counts), n)) + 1
    buyer = rng.permutation(np.repeat(np.arange(nb), counts[:nb])[:n])
    order = np.lexsort((t, buyer))
    cs = np.cumsum(dutiable[order])
    b = buyer[order]
    first = np.r_[True, b[1:] != b[:-1]]
    base = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    within = cs - np.r_[0, cs][base]
    over = order[within > cap]
    buyer[over] = nb + np.arange(len(over))
    return buyer


def make_people(rng: np.random.Generator, n: int, first_birth: str, last_birth: str) -> People:
    """n persons with valid GB 11643 IDs born between the two YYYY-MM-DD dates."""
    region = rng.integers(0, len(REGIONS), n)
    ids = _id_numbers(rng, region, first_birth, last_birth)
    combos = [a + b for a in SURNAMES for b in GIVEN]
    names = table(combos, rng.integers(0, len(combos), n))
    prefix = np.array([int(p) for p in MOBILE_PREFIXES], dtype=np.int64)[rng.integers(0, len(MOBILE_PREFIXES), n)]
    phones = compose(n, [digits(prefix * 10**8 + rng.integers(0, 10**8, n), 11)])
    return People(name=names, id_number=ids, phone=phones, address=_addresses(rng, region))


def _id_numbers(rng: np.random.Generator, region: Ints, first_birth: str, last_birth: str) -> Texts:
    """Resident ID numbers: region code, a birth date in the range, sequence, check character."""
    n = len(region)
    lo, hi = np.datetime64(first_birth), np.datetime64(last_birth)
    birth = lo + rng.integers(0, int((hi - lo).astype(int)) + 1, n).astype("timedelta64[D]")
    ymd = birth.astype("datetime64[D]").astype(str)
    birth_num = np.char.replace(ymd, "-", "").astype(np.int64)
    region_num = np.array([int(r[0]) for r in REGIONS], dtype=np.int64)[region]
    first17 = region_num * 10**11 + birth_num * 1000 + rng.integers(0, 1000, n)
    return compose(n, [digits(first17, 17), (_CHECK_CODES[check_index(first17)][:, None], 1)])


def _addresses(rng: np.random.Generator, region: Ints) -> Texts:
    n = len(region)
    places = table([r[1] + " " for r in REGIONS], region) + table(STREETS, rng.integers(0, len(STREETS), n))
    house = compose(n, [digits(rng.integers(1, 600, n)), const("号 "), digits(rng.integers(1, 20, n))])
    room = compose(n, [const("幢"), digits(rng.integers(1, 30, n) * 100 + rng.integers(1, 5, n)), const("室")])
    addresses: Texts = places + house + room
    return addresses


def check_index(first17: Ints) -> Ints:
    """Index into `pipeline.idcard.CHECK_CHARACTERS` (ISO 7064 MOD 11-2) of 17-digit integers."""
    digit = (first17[:, None] // _POW10[None, :]) % 10
    index: Ints = (digit * _WEIGHTS).sum(axis=1) % 11
    return index
