"""The rule parameters of a customs regime, as plain values.

Money is in integer fen; the tax rate is a Decimal, so `dutiable x rate` is
exact before it is rounded half-up to the fen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Everything the rules, the join and the decisions need to know.

    Invariants: limits are >= 0 fen; `window_ms` > 0; `retention_ms` >= `window_ms`
    is not required, but a decided order is forgotten `retention_ms` of event time
    after its decision (docs/CONTRACT.md, "Time": at least 7 days by default).
    """

    single_limit_fen: int = 500_000
    annual_limit_fen: int = 2_600_000
    tax_rate: Decimal = Decimal("0.091")
    window_ms: int = DAY_MS
    retention_ms: int = 7 * DAY_MS
    inspection_rate: float = 0.055
    inspection_seed: str = "clearance"
    positive_list: frozenset[str] = field(default_factory=frozenset)


REGIMES: dict[str, RulesConfig] = {
    # 2019 regime (MOF/GAC/SAT announcement 2018 No. 49): CNY 5,000 per parcel,
    # CNY 26,000 a year, 70% of 13% VAT = 9.1%.
    "2019": RulesConfig(),
    # 2016 regime of the 11.11 Xiasha day: CNY 2,000 / 20,000, 70% of 17% VAT = 11.9%.
    "2016": RulesConfig(single_limit_fen=200_000, annual_limit_fen=2_000_000, tax_rate=Decimal("0.119")),
}
