"""The fault plan: which orders carry which fault, and the annual-quota groups.

Every fault kind gets the same share of the faulted orders. A quota group is a few
clean orders of one buyer, minutes apart, whose sum exceeds the annual limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tracegen.faults import FAULTS
from tracegen.money import set_dutiable
from tracegen.presets import Regime
from tracegen.tables import Basket, Flags, Ints

KINDS = tuple(FAULTS)


@dataclass(frozen=True, slots=True)
class Plan:
    kinds: Ints  # index into KINDS per order, -1: no fault
    groups: list[list[int]]  # annual-quota groups: order indices

    @property
    def clean(self) -> Flags:
        """Orders without a fault: their three base documents are written as they are."""
        return self.kinds < 0

    def faulted(self) -> list[tuple[int, str]]:
        """(order index, fault kind) of every faulted order, by order index."""
        return [(int(i), KINDS[k]) for i, k in enumerate(self.kinds.tolist()) if k >= 0]

    def count(self, kind: str) -> int:
        return int((self.kinds == KINDS.index(kind)).sum())


def fault_kinds(rng: np.random.Generator, n: int, fault_rate: float) -> Ints:
    """Fault kind index per order (-1: none); every kind gets the same share."""
    kinds = np.full(n, -1, np.int64)
    k = min(n, round(n * fault_rate))
    kinds[rng.permutation(n)[:k]] = np.arange(k) % len(KINDS)
    return kinds


def quota_groups(rng: np.random.Generator, t: Ints, kinds: Ints, regime: Regime) -> list[list[int]]:
    """Annual-quota groups of clean orders (about a tenth of one fault kind's share)."""
    count = max(2, round((kinds >= 0).sum() / len(KINDS) / 10))
    return buster_orders(rng, t, kinds < 0, size=busters_per_group(regime), count=count)


def buster_orders(rng: np.random.Generator, t: Ints, free: Flags, *, size: int, count: int) -> list[list[int]]:
    """`count` lists of `size` free orders, each list spaced minutes apart in time."""
    span = int(t[-1]) + 1
    spacing = min(300, span // (size + 1))
    taken = ~free.copy()
    out = []
    for _ in range(count):
        s = int(rng.integers(0, max(1, span - size * spacing)))
        chosen = []
        for j in range(size):
            idx = int(np.searchsorted(t, s + j * spacing))
            while idx < len(t) and taken[idx]:
                idx += 1
            if idx < len(t):
                taken[idx] = True
                chosen.append(idx)
        out.append(chosen)
    return out


def busters_per_group(regime: Regime) -> int:
    return math.ceil(1.4 * regime.annual_limit_fen / regime.single_limit_fen) + 1


def aim(rng: np.random.Generator, basket: Basket, plan: Plan, regime: Regime) -> None:
    """Set the dutiable values the plan needs: over or at the single limit, and the quota groups."""
    single = regime.single_limit_fen
    for i in np.flatnonzero(plan.kinds == KINDS.index("single-limit")).tolist():
        set_dutiable(basket, i, single + int(rng.integers(1, single // 2)))
    for i in np.flatnonzero(plan.kinds == KINDS.index("single-limit-boundary")).tolist():
        set_dutiable(basket, i, single)
    for members in plan.groups:
        for i in members:
            basket.freight[i] = 0
            set_dutiable(basket, i, int(single * rng.uniform(0.6, 0.98)))
