"""What each order buys and pays: items from the positive list, freight, tax and discounts.

Money is integer fen throughout, vectorised over all orders.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources

import numpy as np

from tracegen.presets import Regime
from tracegen.tables import Basket, Ints, Items, Money
from tracegen.text import table
from tracegen.vocab import ITEM_NAMES


def positive_codes() -> list[str]:
    """The 8-digit codes of the positive list, in file order."""
    text = resources.files("pipeline").joinpath("data/positive_list.txt").read_text(encoding="utf-8")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def positive_list() -> frozenset[str]:
    return frozenset(positive_codes())


def draw_basket(rng: np.random.Generator, n: int, mean_yuan: float, regime: Regime) -> Basket:
    """Items and freight of n orders, each dutiable value at most 90 % of the single limit."""
    items = draw_items(rng, n, positive_codes(), mean_yuan)
    freight = np.where(rng.random(n) < 0.6, 0, rng.integers(5, 21, n) * 100).astype(np.int64)
    price = fit_under(items, freight, regime.single_limit_fen * 9 // 10)
    return Basket(items=replace(items, price=price), freight=freight)


def draw_items(rng: np.random.Generator, n: int, codes: list[str], mean_yuan: float) -> Items:
    """1-4 items for each of n orders: a code of `codes` (+ 2 digits), a name, price and quantity."""
    counts = rng.choice(4, n, p=[0.55, 0.25, 0.12, 0.08]) + 1
    start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    m = int(start[-1])
    code_idx = rng.integers(0, len(codes), m)
    suffix = rng.integers(0, 3, m)
    full = [c + sfx for c in codes for sfx in ("00", "10", "90")]
    gcodes = table(full, code_idx * 3 + suffix)
    pick = rng.integers(0, 1 << 30, m)
    options = [ITEM_NAMES.get(c[:4], ("跨境商品",)) for c in codes]
    flat = [o for opts in options for o in opts]
    first = np.cumsum([0] + [len(o) for o in options])[:-1]
    sizes = np.array([len(o) for o in options])
    names = table(flat, first[code_idx] + pick % sizes[code_idx])
    price = np.maximum(100, np.round(rng.lognormal(np.log(mean_yuan * 60), 0.8, m))).astype(np.int64)
    qty = rng.choice([10, 10, 10, 10, 20, 20, 30, 5, 15, 25], m).astype(np.int64)
    return Items(start=start, gcode=gcodes, name=names, price=price, qty10=qty)


def item_totals(price: Ints, qty10: Ints) -> Ints:
    """price x qty, half-up to the fen (qty in tenths)."""
    return (price * qty10 + 5) // 10


def fit_under(items: Items, freight: Ints, cap: int) -> Ints:
    """Item prices, scaled down until every order's dutiable value is <= cap fen."""
    price, start = items.price.copy(), items.start
    for _ in range(20):
        goods = np.add.reduceat(item_totals(price, items.qty10), start[:-1])
        over = goods + freight > cap
        if not over.any():
            return price
        per_item = np.repeat(over, np.diff(start))
        price[per_item] = np.maximum(1, price[per_item] * 6 // 10)
    raise RuntimeError("could not fit orders under the single limit")


def set_dutiable(basket: Basket, i: int, target: int) -> None:
    """Make order i's dutiable value exactly `target` via its first item (qty 1)."""
    items = basket.items
    s, e = int(items.start[i]), int(items.start[i + 1])
    items.price[s + 1 : e] = 100
    items.qty10[s + 1 : e] = 10
    others = (e - s - 1) * 100
    items.qty10[s] = 10
    items.price[s] = target - int(basket.freight[i]) - others


def finish_money(rng: np.random.Generator, basket: Basket, regime: Regime) -> Money:
    """Item totals, goods value, discounts (15 % of orders), tax and the amount paid."""
    total = item_totals(basket.items.price, basket.items.qty10)
    goods = np.add.reduceat(total, basket.items.start[:-1])
    n = len(goods)
    discount = np.where(rng.random(n) < 0.15, np.minimum(goods // 10, rng.integers(500, 3000, n)), 0)
    freight = basket.freight
    tax = regime.tax(goods + freight)
    paid = goods + freight + tax - discount
    return Money(item_total=total, goods=goods, freight=freight, discount=discount, tax=tax, paid=paid)
