"""`clearance demo` end to end on a small trace: report, outputs and the plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedded.demo import cli


def test_demo_reports_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--orders", "2000", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for word in (
        "RELEASED",
        "INSPECTION",
        "REVIEW",
        "REJECTED",
        "top reasons",
        "dead letters",
        "events/s",
        "decision delay",
    ):
        assert word in text
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert (tmp_path / "output" / "matched.jsonl").stat().st_size > 0
