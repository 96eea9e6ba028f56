"""When things happen: order arrivals along a rate curve, then payment and waybill times.

All times are integer seconds after the preset's first midnight.
"""

from __future__ import annotations

import numpy as np

from tracegen.presets import Preset
from tracegen.tables import Floats, Ints, Times
from tracegen.vocab import PAY_COMPANIES


def day_rate(preset: Preset) -> Floats:
    """Rate per second: the hourly base profile plus a decaying midnight spike."""
    t = np.arange(preset.seconds, dtype=np.float64)
    hourly = np.array(preset.hourly)
    base = np.interp(t / 3600.0, np.arange(len(hourly)), hourly)
    mean = base.mean()
    rate: Floats = base + preset.spike * mean * np.exp(-t / preset.tau_s)
    return rate


def sample_times(rng: np.random.Generator, rate: Floats, n: int) -> Ints:
    """n sorted second offsets drawn from a per-second rate curve (inverse CDF)."""
    cdf = np.cumsum(rate, dtype=np.float64)
    u = rng.random(n) * cdf[-1]
    return np.sort(np.searchsorted(cdf, u, side="right").astype(np.int64))


def doc_times(rng: np.random.Generator, t: Ints, groups: list[list[int]]) -> Times:
    """The documents' times of orders placed at `t`.

    Payments are pushed in batches of 30-120 s per payment company, waybills follow
    after minutes to hours; the orders of an annual-quota group (`groups`) get both
    within a minute or so.
    """
    n = len(t)
    pay_time = np.maximum(0, t - rng.integers(0, 60, n))
    company = rng.integers(0, len(PAY_COMPANIES), n)
    period = np.array([30, 60, 120])[company]
    phase = np.array([7, 23, 51])[company]
    push = phase + -((-(pay_time + 5 - phase)) // period) * period
    lag = np.minimum(10_800, 60 + rng.lognormal(np.log(240), 0.8, n)).astype(np.int64)
    waybill = t + lag
    for members in groups:
        push[members] = t[members] + rng.integers(0, 60, len(members))
        waybill[members] = t[members] + rng.integers(30, 90, len(members))
    return Times(order=t, pay=pay_time, payment=push, waybill=waybill)
