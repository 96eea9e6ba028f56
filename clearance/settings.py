"""Every setting of every shell, read once from the environment.

`Settings.from_env(os.environ)` is the only place that reads the environment.
Core functions receive plain values (`Settings.rules()` builds the core's
`RulesConfig`). Secrets never print: `__repr__` masks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.config import REGIMES, RulesConfig
from pipeline.records import DocKind

DEFAULT_POSITIVE_LIST = Path(__file__).resolve().parent.parent / "pipeline" / "data" / "positive_list.txt"


def load_positive_list(path: Path) -> frozenset[str]:
    """Read the positive list: one 8-digit HS code per line, `#` comments allowed."""
    codes = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            if len(code) != 8 or not code.isdigit():
                raise ValueError(f"{path}: not an 8-digit HS code: {code!r}")
            codes.add(code)
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class Settings:
    """All configuration. Field names map to CLEARANCE_<NAME> environment variables,
    except `bootstrap`, which is KAFKA_BOOTSTRAP."""

    bootstrap: str = "127.0.0.1:9092"
    topic_orders: str = "clearance.orders"
    topic_payments: str = "clearance.payments"
    topic_waybills: str = "clearance.waybills"
    topic_matched: str = "clearance.declarations.matched"
    topic_flagged: str = "clearance.declarations.flagged"
    topic_deadletter: str = "clearance.deadletter"
    topic_ticks: str = "clearance.ticks"
    partitions: int = 12
    replication: int = 1
    broker_port: int = 9092
    kafka_home: str = ""
    app_id: str = "clearance"
    data_dir: str = "./data"
    web_port: int = 6066
    regime: str = "2019"
    single_limit: Decimal | None = None
    annual_limit: Decimal | None = None
    tax_rate: Decimal | None = None
    window_hours: float = 24.0
    retention_days: float = 7.0
    idle_seconds: float = 30.0
    inspection_rate: float = 0.055
    inspection_seed: str = "clearance"
    positive_list: str = str(DEFAULT_POSITIVE_LIST)
    log_level: str = "INFO"
    processing_guarantee: str = "at_least_once"
    tick_seconds: float = 1.0
    merge_wait_seconds: float = 2.0
    commit_seconds: float = 1.0
    session_timeout_seconds: float = 15.0
    sasl_password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = "KAFKA_BOOTSTRAP" if f.name == "bootstrap" else f"CLEARANCE_{f.name.upper()}"
            if key in env:
                values[f.name] = _convert(f.name, f.type, env[key])
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"CLEARANCE_REGIME must be one of {sorted(REGIMES)}, not {self.regime!r}")
        if not 0.0 <= self.inspection_rate <= 1.0:
            raise ValueError("CLEARANCE_INSPECTION_RATE must be between 0 and 1")
        if self.partitions < 1:
            raise ValueError("CLEARANCE_PARTITIONS must be at least 1")
        if self.window_hours <= 0:
            raise ValueError("CLEARANCE_WINDOW_HOURS must be positive")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ValueError("CLEARANCE_PROCESSING_GUARANTEE must be at_least_once or exactly_once")
        if self.tick_seconds <= 0 or self.commit_seconds <= 0:
            raise ValueError("CLEARANCE_TICK_SECONDS and CLEARANCE_COMMIT_SECONDS must be positive")
        if self.session_timeout_seconds < 6:
            raise ValueError("CLEARANCE_SESSION_TIMEOUT_SECONDS must be at least 6 (the broker's minimum)")

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.topic_orders, self.topic_payments, self.topic_waybills)

    @property
    def kind_topics(self) -> dict[DocKind, str]:
        """The input topic of each kind of document (the one kind-to-topic map)."""
        return {"order": self.topic_orders, "payment": self.topic_payments, "waybill": self.topic_waybills}

    def rules(self) -> RulesConfig:
        """The core's configuration: the regime's defaults with any override applied."""
        base = REGIMES[self.regime]
        return replace(
            base,
            single_limit_fen=_fen(self.single_limit) if self.single_limit is not None else base.single_limit_fen,
            annual_limit_fen=_fen(self.annual_limit) if self.annual_limit is not None else base.annual_limit_fen,
            tax_rate=self.tax_rate if self.tax_rate is not None else base.tax_rate,
            window_ms=int(self.window_hours * 3_600_000),
            retention_ms=int(self.retention_days * 86_400_000),
            inspection_rate=self.inspection_rate,
            inspection_seed=self.inspection_seed,
            positive_list=load_positive_list(Path(self.positive_list)),
        )


def _fen(yuan: Decimal) -> int:
    return int((yuan * 100).to_integral_exact())


def _convert(name: str, type_: object, raw: str) -> Any:
    text = str(type_)
    try:
        if "Decimal" in text:
            return Decimal(raw)
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"setting {name}: cannot read {raw!r}") from exc
    return raw
