"""Base orders for a trace: times, buyers, items and money, then field fragments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.dtypes import StringDType

from tracegen import base as B
from tracegen import vocab as V

_S = StringDType()


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    day0: str
    seconds: int
    orders: int
    regime: str
    spike: float
    tau_s: float
    hourly: tuple[float, ...]
    prefix: str
    mean_yuan: float


_DAY = (6, 4, 2.5, 1.2, 0.8, 0.8, 1, 2, 3.5, 5, 6, 6.5, 7, 6.5, 6, 6, 6, 6.5, 7, 8.5, 10, 10, 8.5, 6, 5)
PRESETS = {
    "xiasha": Preset("xiasha", "2016-11-11", 59_400, 650_000, "2016", 30.0, 600.0, _DAY, "XS", 45.0),
    "peak-hour": Preset("peak-hour", "2026-11-11", 3_600, 100_000, "2019", 4.0, 600.0, (1.0, 1.0), "PK", 80.0),
    "day": Preset("day", "2026-11-11", 86_400, 200_000, "2019", 30.0, 900.0, _DAY, "DY", 80.0),
}


@dataclass(slots=True)
class Base:
    """All orders as arrays plus the fragment columns of their three base documents."""

    t: tuple[np.ndarray, np.ndarray, np.ndarray]
    buyer: np.ndarray
    dutiable: np.ndarray
    paid: np.ndarray
    freight: np.ndarray
    tax: np.ndarray
    order_no: list[str]
    people: B.People
    cols: tuple[list[list[str]], list[list[str]], list[list[str]]]
    item_cols: list[list[Any]]
    item_start: np.ndarray


def _money_arrays(rng: np.random.Generator, n: int, preset: Preset, regime: B.Regime) -> dict[str, Any]:
    start, gcodes, names, price, qty = B.make_items(rng, n, _codes(), preset.mean_yuan)
    freight = np.where(rng.random(n) < 0.6, 0, rng.integers(5, 21, n) * 100).astype(np.int64)
    price = B.fit_under(price, qty, start, freight, regime.single_limit_fen * 9 // 10)
    return {"start": start, "gcodes": gcodes, "names": names, "price": price, "qty": qty, "freight": freight}


def set_dutiable(m: dict[str, Any], i: int, target: int) -> None:
    """Make order i's dutiable value exactly `target` via its first item (qty 1)."""
    s, e = int(m["start"][i]), int(m["start"][i + 1])
    m["price"][s + 1 : e] = 100
    m["qty"][s + 1 : e] = 10
    others = (e - s - 1) * 100
    m["qty"][s] = 10
    m["price"][s] = target - int(m["freight"][i]) - others


def finish_money(rng: np.random.Generator, m: dict[str, Any], regime: B.Regime) -> None:
    total = B.item_totals(m["price"], m["qty"])
    goods = np.add.reduceat(total, m["start"][:-1])
    n = len(goods)
    discount = np.where(rng.random(n) < 0.15, np.minimum(goods // 10, rng.integers(500, 3000, n)), 0)
    tax = regime.tax(goods + m["freight"])
    m.update(total=total, goods=goods, discount=discount, tax=tax, paid=goods + m["freight"] + tax - discount)


def assign_buyers(rng: np.random.Generator, t: np.ndarray, dutiable: np.ndarray, cap: int) -> np.ndarray:
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


def doc_times(rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(payTime, payment push, waybill) seconds: batches of 30-120 s per payment company."""
    n = len(t)
    pay_time = np.maximum(0, t - rng.integers(0, 60, n))
    company = rng.integers(0, len(V.PAY_COMPANIES), n)
    period = np.array([30, 60, 120])[company]
    phase = np.array([7, 23, 51])[company]
    push = phase + -((-(pay_time + 5 - phase)) // period) * period
    lag = np.minimum(10_800, 60 + rng.lognormal(np.log(240), 0.8, n)).astype(np.int64)
    return pay_time, push, t + lag


def _codes() -> list[str]:
    from importlib import resources

    text = resources.files("pipeline").joinpath("data/positive_list.txt").read_text(encoding="utf-8")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def positive_list() -> frozenset[str]:
    return frozenset(_codes())


def buster_orders(rng: np.random.Generator, t: np.ndarray, free: np.ndarray, k: int, groups: int) -> list[list[int]]:
    """`groups` lists of k free orders, each list spaced minutes apart in time."""
    span = int(t[-1]) + 1
    spacing = min(300, span // (k + 1))
    taken = ~free.copy()
    out = []
    for _ in range(groups):
        s = int(rng.integers(0, max(1, span - k * spacing)))
        chosen = []
        for j in range(k):
            idx = int(np.searchsorted(t, s + j * spacing))
            while idx < len(t) and taken[idx]:
                idx += 1
            if idx < len(t):
                taken[idx] = True
                chosen.append(idx)
        out.append(chosen)
    return out


def busters_per_group(regime: B.Regime) -> int:
    return math.ceil(1.4 * regime.annual_limit_fen / regime.single_limit_fen) + 1
