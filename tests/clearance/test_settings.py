"""Settings from the environment: names, regimes, overrides, refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from clearance.settings import Settings, load_positive_list


def test_defaults_are_the_2019_regime_and_domain_topic_names() -> None:
    s = Settings.from_env({})
    rules = s.rules()
    assert (rules.single_limit_fen, rules.annual_limit_fen, rules.tax_rate) == (500_000, 2_600_000, Decimal("0.091"))
    assert rules.window_ms == 24 * 3_600_000 and rules.inspection_rate == 0.055
    assert s.input_topics == ("clearance.orders", "clearance.payments", "clearance.waybills")
    assert (s.topic_matched, s.topic_flagged, s.topic_deadletter) == (
        "clearance.declarations.matched",
        "clearance.declarations.flagged",
        "clearance.deadletter",
    )
    assert "33049900" in rules.positive_list


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP": "10.0.0.1:9092",
            "CLEARANCE_REGIME": "2016",
            "CLEARANCE_PARTITIONS": "24",
            "CLEARANCE_WINDOW_HOURS": "0.5",
            "CLEARANCE_INSPECTION_RATE": "0.1",
            "CLEARANCE_ANNUAL_LIMIT": "30000",
            "CLEARANCE_TOPIC_ORDERS": "cbec.orders",
            "CLEARANCE_WATERMARK_SECONDS": "0.25",
            "CLEARANCE_MAX_FETCH_KB": "64",
            "CLEARANCE_FETCH_MIN_KB": "16",
            "CLEARANCE_FETCH_WAIT_MS": "20",
            "CLEARANCE_PRODUCER_LINGER_MS": "0",
        }
    )
    assert (s.fetch_min_kb, s.fetch_wait_ms) == (16, 20) and (Settings().fetch_min_kb, Settings().fetch_wait_ms) == (
        64,
        50,
    )
    assert s.watermark_seconds == 0.25 and Settings().watermark_seconds == 0.05
    assert s.producer_linger_ms == 0 and Settings().producer_linger_ms == 20
    assert s.max_fetch_kb == 64 and Settings().max_fetch_kb == 256
    rules = s.rules()
    assert s.bootstrap == "10.0.0.1:9092" and s.partitions == 24 and s.topic_orders == "cbec.orders"
    assert (rules.single_limit_fen, rules.annual_limit_fen, rules.tax_rate) == (200_000, 3_000_000, Decimal("0.119"))
    assert rules.window_ms == 1_800_000 and rules.inspection_rate == 0.1


@pytest.mark.parametrize(
    "env",
    [
        {"CLEARANCE_REGIME": "2020"},
        {"CLEARANCE_PARTITIONS": "zero"},
        {"CLEARANCE_INSPECTION_RATE": "2"},
        {"CLEARANCE_WINDOW_HOURS": "0"},
        {"CLEARANCE_TAX_RATE": "nine"},
        {"CLEARANCE_WATERMARK_SECONDS": "0"},
        {"CLEARANCE_MAX_FETCH_KB": "0"},
        {"CLEARANCE_FETCH_MIN_KB": "-1"},
        {"CLEARANCE_FETCH_WAIT_MS": "0"},
        {"CLEARANCE_FETCH_WAIT_MS": "60000"},
        {"CLEARANCE_PRODUCER_LINGER_MS": "-1"},
        {"CLEARANCE_PRODUCER_LINGER_MS": "5000"},
        {"CLEARANCE_LOG_LEVEL": "verbose"},
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="CLEARANCE_|setting"):
        Settings.from_env(env)


def test_the_log_level_is_read_in_any_case() -> None:
    """`CLEARANCE_LOG_LEVEL=info` once reached Python's logging as "info" and the worker died at
    its start with a traceback ("Unknown level: 'info'")."""
    assert Settings.from_env({"CLEARANCE_LOG_LEVEL": " info"}).log_level == "INFO"
    assert Settings.from_env({"CLEARANCE_LOG_LEVEL": "Debug"}).log_level == "DEBUG"
    assert Settings().log_level == "INFO"


def test_secrets_never_print() -> None:
    assert "hunter2" not in repr(Settings.from_env({"CLEARANCE_SASL_PASSWORD": "hunter2"}))


def test_positive_list_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "list.txt"
    good.write_text("# comment\n33049900  # cosmetics\n\n", encoding="utf-8")
    assert load_positive_list(good) == frozenset({"33049900"})
    bad = tmp_path / "bad.txt"
    bad.write_text("3304990\n", encoding="utf-8")
    with pytest.raises(ValueError, match="8-digit"):
        load_positive_list(bad)
