"""benchmarks/locality.py: the parse with far memory read between two parses, and the memory walk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from benchmarks import locality


def test_a_run_parses_every_kind_and_records_each_figure(tmp_path: Path) -> None:
    trace, out = tmp_path / "trace", tmp_path / "locality.jsonl"
    subprocess.run(
        [sys.executable, "-m", "clearance.cli", "generate", str(trace), "--orders", "40", "--seed", "3"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    docs = locality.documents(trace, 30)
    assert len(docs) == 30
    assert {parse.__name__ for parse, _ in docs} == {"parse_order", "parse_payment", "parse_waybill"}, "mixed"
    assert locality.main(["--trace", str(trace), "--documents", "30", "--reads", "0,50", "--results", str(out)]) == 0
    (line,) = out.read_bytes().splitlines()
    run = orjson.loads(line)
    assert run["documents"] == 30 and set(run["parseUs"]) == {"0", "50"}
    assert all(us > 0 for us in run["parseUs"].values()), "each parse measured"
    assert list(run["walkNsPerRead"]) == [f"{kb}KB" for kb in locality.WALK_KB]
    assert set(run["speed"]) == {"loopNs", "asyncioWaitUs", "memoryNs"} and run["machine"]["kernel"]
