"""The embedded runner over small trace directories, against known outputs."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from clearance.settings import Settings
from embedded.runner import cli, run_trace
from tests.fixtures import make_sample

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "small"


def _read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_shipped_sample_is_what_the_fixture_builder_writes(tmp_path: Path) -> None:
    make_sample.write(tmp_path)
    for name in ("orders.jsonl", "payments.jsonl", "waybills.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes()


@pytest.mark.parametrize("memory", [False, True], ids=["rocksdict", "memory"])
def test_sample_trace_golden_output(tmp_path: Path, memory: bool) -> None:
    summary = run_trace(SAMPLE, tmp_path, Settings().rules(), memory=memory)
    matched = _read(tmp_path / "matched.jsonl")
    flagged = _read(tmp_path / "flagged.jsonl")
    assert [(d["orderNo"], d["status"], d["reasons"]) for d in matched] == [("SAMPLE0001", "RELEASED", [])]
    assert sorted((d["orderNo"], d["status"], tuple(d["reasons"])) for d in flagged) == [
        ("SAMPLE0001", "REVIEW", ("DOCUMENT_AFTER_DECISION",)),
        ("SAMPLE0002", "REVIEW", ("PAID_AMOUNT_MISMATCH",)),
        ("SAMPLE0003", "REJECTED", ("MISSING_WAYBILL",)),
        ("SAMPLE0004", "REJECTED", ("NOT_ON_POSITIVE_LIST",)),
    ]
    released = matched[0]
    assert released["returnStatus"] == 800 and released["dutiableValue"] == "310.00" and released["tax"] == "28.21"
    assert released["eventTime"] == "2026-11-11T00:03:01+08:00"
    assert summary.documents == 13 and summary.dead_letters == 6 and summary.redeliveries == 1


def test_every_invalid_message_is_dead_lettered_with_its_bytes(tmp_path: Path) -> None:
    run_trace(SAMPLE, tmp_path, Settings().rules())
    letters = _read(tmp_path / "deadletter.jsonl")
    got = sorted((d["sourceTopic"], d["sourceOffset"], d["field"]) for d in letters)
    assert got == [
        ("clearance.orders", 4, None),
        ("clearance.orders", 5, None),
        ("clearance.payments", 5, "amountPaid"),
        ("clearance.payments", 6, "amountPaid"),
        ("clearance.waybills", 4, "packNo"),
        ("clearance.waybills", 5, None),
    ]
    files = {
        "clearance.orders": "orders.jsonl",
        "clearance.payments": "payments.jsonl",
        "clearance.waybills": "waybills.jsonl",
    }
    for letter in letters:
        original = (SAMPLE / files[str(letter["sourceTopic"])]).read_bytes().split(b"\n")[int(letter["sourceOffset"])]
        assert base64.b64decode(str(letter["value"])) == original
        assert letter["error"] == "INVALID_RECORD" and letter["reason"]


def test_every_input_message_ends_up_in_exactly_one_place(tmp_path: Path) -> None:
    summary = run_trace(SAMPLE, tmp_path, Settings().rules())
    lines = sum(
        len((SAMPLE / f).read_bytes().splitlines()) for f in ("orders.jsonl", "payments.jsonl", "waybills.jsonl")
    )
    assert summary.messages == lines


def test_output_is_deterministic_except_decided_at(tmp_path: Path) -> None:
    run_trace(SAMPLE, tmp_path / "a", Settings().rules())
    run_trace(SAMPLE, tmp_path / "b", Settings().rules())
    for name in ("matched.jsonl", "flagged.jsonl"):
        a = [{k: v for k, v in d.items() if k != "decidedAt"} for d in _read(tmp_path / "a" / name)]
        b = [{k: v for k, v in d.items() if k != "decidedAt"} for d in _read(tmp_path / "b" / name)]
        assert a == b and a


def test_absent_files_are_fine(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "payments.jsonl").write_bytes((SAMPLE / "payments.jsonl").read_bytes())
    summary = run_trace(trace, tmp_path / "out", Settings().rules())
    assert summary.statuses["REJECTED"] == 4  # four paid orders whose order and waybill never came
    assert summary.reasons["MISSING_ORDER"] == 4


def test_missing_input_directory_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "trace directory not found" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_sample.write(tmp_path / "t")
    (tmp_path / "t" / "orders.jsonl").chmod(0)
    assert cli(["--input", str(tmp_path / "t"), "--output", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_directory_in_place_of_a_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_sample.write(tmp_path / "t")
    (tmp_path / "t" / "orders.jsonl").unlink()
    (tmp_path / "t" / "orders.jsonl").mkdir()
    assert cli(["--input", str(tmp_path / "t"), "--output", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_command_line_prints_a_summary(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clearance.cli",
            "run",
            "--input",
            str(SAMPLE),
            "--output",
            str(tmp_path),
            "--regime",
            "2016",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "declarations" in proc.stdout and "events/s" in proc.stdout
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["declarations"] == 5 and summary["deadLetters"] == 6


@pytest.mark.parametrize("cache_size", [0, 1, 3])
def test_state_cache_never_changes_the_output(tmp_path: Path, cache_size: int) -> None:
    def decided(out: Path) -> list[tuple[object, ...]]:
        rows = _read(out / "matched.jsonl") + _read(out / "flagged.jsonl")
        return sorted((d["declarationId"], d["status"], tuple(d["reasons"])) for d in rows)

    run_trace(SAMPLE, tmp_path / "ref", Settings().rules(), cache_size=100_000)
    run_trace(SAMPLE, tmp_path / "small", Settings().rules(), cache_size=cache_size)
    assert decided(tmp_path / "small") == decided(tmp_path / "ref")
