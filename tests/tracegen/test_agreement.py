"""The generator's ground truth agrees with the embedded runner: every declaration,
every late-document review and every dead letter, with every fault kind present."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import cast

import orjson
import pytest

from clearance.settings import Settings
from embedded.runner import run_trace
from tracegen.generator import generate

TOPIC_FILE = {
    "clearance.orders": "orders.jsonl",
    "clearance.payments": "payments.jsonl",
    "clearance.waybills": "waybills.jsonl",
}


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _key(record: dict[str, object]) -> tuple[object, object, tuple[str, ...]]:
    return record["orderNo"], record["status"], tuple(cast(list[str], record["reasons"]))


@pytest.mark.parametrize(
    ("preset", "orders", "regime"),
    [("peak-hour", 100_000, "2019"), ("xiasha", 20_000, "2016")],
)
def test_labels_agree_with_the_runner(tmp_path: Path, preset: str, orders: int, regime: str) -> None:
    trace, out = tmp_path / "trace", tmp_path / "out"
    info = generate(trace, preset, orders, 20261111, None, 0.12, 0.002)
    assert info["regime"]["name"] == regime
    assert all(count > 0 for count in info["faults"].values()), info["faults"]
    assert all(count > 0 for count in info["invalid"].values()), info["invalid"]

    run_trace(trace, out, Settings(regime=regime).rules())

    expected = Counter(_key(label) for label in _lines(trace / "labels.jsonl"))
    got = Counter(_key(d) for name in ("matched.jsonl", "flagged.jsonl") for d in _lines(out / name))
    assert got == expected, (list((got - expected).items())[:5], list((expected - got).items())[:5])
    assert sum(1 for k in got if k[2] == ("DOCUMENT_AFTER_DECISION",)) > 0
    codes = {code for _, _, reasons in got for code in reasons}
    assert len(codes) == 17, sorted(codes)  # every reason code of docs/CONTRACT.md occurs

    expected_dead = sorted((d["file"], d["line"]) for d in _lines(trace / "expected_deadletters.jsonl"))
    got_dead = sorted((TOPIC_FILE[str(d["sourceTopic"])], d["sourceOffset"]) for d in _lines(out / "deadletter.jsonl"))
    assert got_dead == expected_dead
