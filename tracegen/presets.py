"""What a trace looks like: presets (day, volume, arrival curve) and tax regimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from tracegen.tables import Ints


@dataclass(frozen=True, slots=True)
class Regime:
    name: str
    single_limit_fen: int
    annual_limit_fen: int
    tax_permille: int  # 91 = 9.1 %

    def tax(self, dutiable: Ints) -> Ints:
        """Half-up to the fen, integer arithmetic only."""
        return (dutiable * self.tax_permille + 500) // 1000


REGIMES = {"2016": Regime("2016", 200_000, 2_000_000, 119), "2019": Regime("2019", 500_000, 2_600_000, 91)}


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    day0: str  # YYYY-MM-DD, the first day (CST)
    seconds: int  # length of the arrival curve
    orders: int
    regime: str
    spike: float  # the midnight peak rate as a multiple of the curve's mean
    tau_s: float  # decay time of the spike
    hourly: tuple[float, ...]  # relative rate at each hour
    prefix: str  # orderNo prefix
    mean_yuan: float

    @property
    def midnight(self) -> np.datetime64:
        """The first day's midnight: time 0 of every offset in seconds."""
        return np.datetime64(self.day0 + "T00:00:00")

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.day0)

    @property
    def day(self) -> str:
        """The first day as YYYYMMDD."""
        return self.day0.replace("-", "")


_DAY = (6, 4, 2.5, 1.2, 0.8, 0.8, 1, 2, 3.5, 5, 6, 6.5, 7, 6.5, 6, 6, 6, 6.5, 7, 8.5, 10, 10, 8.5, 6, 5)
PRESETS = {
    "xiasha": Preset("xiasha", "2016-11-11", 59_400, 650_000, "2016", 30.0, 600.0, _DAY, "XS", 45.0),
    "peak-hour": Preset("peak-hour", "2026-11-11", 3_600, 100_000, "2019", 4.0, 600.0, (1.0, 1.0), "PK", 80.0),
    "day": Preset("day", "2026-11-11", 86_400, 200_000, "2019", 30.0, 900.0, _DAY, "DY", 80.0),
}
