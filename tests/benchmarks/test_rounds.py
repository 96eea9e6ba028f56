"""`clearance bench --rounds N`: each ratio taken within a round, each case its median round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import rounds
from benchmarks.report import _row, add_ratios, render
from benchmarks.suite import build_parser

# 4 December, 17:48 and 17:56 on one host: f and c of two runs, and a third made up in between
F = [5_870.0, 4_506.0, 5_000.0]
C = [2_532.0, 2_471.0, 2_600.0]


def _case(rate: float, status: str = "ok", **more: Any) -> dict[str, Any]:
    return {"status": status, "eventsPerSecond": rate, "eventsPerCpuSecond": rate * 1.05, "wallSeconds": 60.0, **more}


def _results(c: list[dict[str, Any]], f: list[dict[str, Any]]) -> dict[str, Any]:
    machine = {"nproc": 2, "cpu": "test", "ramGB": 1, "python": "3.11", "kafka": "4", "librdkafka": "2", "faust": "0"}
    a = [_case(150_000.0), _case(100_000.0), _case(140_000.0)][: len(c)]
    cases = {"a": rounds.merge(a), "f": rounds.merge(f), "c": rounds.merge(c)}
    parameters = {"orders": 50_194, "messages": 151_725, "rounds": len(c)}
    return {"timestamp": "2026-12-04T18:30:00", "machine": machine, "parameters": parameters, "cases": cases}


def test_a_case_is_its_median_round_and_keeps_every_rounds_figures() -> None:
    runs = [_case(rate, throughputSeries=[[1, rate]]) for rate in C]
    case = rounds.merge(runs)
    assert case["eventsPerSecond"] == 2_532.0 and case["round"] == 1, "2,471 < 2,532 < 2,600: round 1 is the median"
    assert case["throughputSeries"] == [[1, 2_532.0]], "the median round's series, not another's"
    assert [r["eventsPerSecond"] for r in case["rounds"]] == C
    assert all("throughputSeries" not in r for r in case["rounds"]), "the rounds keep their figures, not series"
    even = rounds.merge([_case(r) for r in (4_000.0, 1_000.0, 3_000.0, 2_000.0)])
    assert even["eventsPerSecond"] == 2_000.0 and even["round"] == 4, "even: the lower median, a measured figure"
    assert rounds.merge([runs[0]]) is runs[0], "one round: the case as it ran, no rounds"


def test_each_ratio_is_the_median_of_the_ratios_within_the_rounds_not_of_the_medians() -> None:
    results = _results([_case(r) for r in C], [_case(r) for r in F])
    add_ratios(results)
    within = [round(c / f, 4) for c, f in zip(C, F, strict=True)]
    assert results["roundRatios"]["c/f"] == within == [0.4313, 0.5484, 0.52]
    assert results["ratios"]["c/f"] == 0.52, "the median of 0.431, 0.548, 0.520"
    assert round(2_532 / 5_000, 4) == 0.5064, "what the medians' ratio would say instead"
    assert results["cpuRatios"]["c/f"] == 0.52 and len(results["roundCpuRatios"]["c/f"]) == 3
    assert results["cases"]["c"]["ratioToRaw"] == round(2_600 / 140_000, 4), "x raw within the rounds too"
    text = render(results)
    assert "ratios (the median of 3 rounds' own): c/f 0.520 (0.431 0.548 0.520)" in text
    assert "one worker >= 0.5 x Faust's floor: met (0.520; rounds 0.431 0.548 0.520)" in text
    assert "rounds 2,532 / 2,471 / 2,600 events/s, the median round 1's figures" in text
    row = _row(results, Path("x.json")).split(" | ")
    assert row[2] == "50,194 / 151,725, 3 rounds (medians)" and row[-3] == "0.52"


def test_a_round_with_wrong_output_keeps_the_case_out_of_every_ratio_and_says_which() -> None:
    wrong = "wrong output: 12 of the embedded runner's 50,480 declarations missing"
    results = _results([_case(C[0]), _case(C[1], wrong), _case(C[2])], [_case(r) for r in F])
    assert results["cases"]["c"]["failedRound"] == 2
    add_ratios(results)
    assert "c/f" not in results["ratios"] and "c/f" not in results.get("roundRatios", {})
    assert f"case c not judged: {wrong}" in render(results)
    assert _row(results, Path("x.json")).split(" | ")[5].endswith("WRONG OUTPUT")


def test_the_host_speed_at_each_rounds_start_is_reported() -> None:
    results = _results([_case(r) for r in C], [_case(r) for r in F])
    speeds = [{"loopNs": 17.2, "asyncioWaitUs": 27.4}, {"loopNs": 16.0, "asyncioWaitUs": 33.1}]
    results["machine"]["speedByRound"] = speeds
    add_ratios(results)
    assert "the host at each round's start: asyncio wait 27/33 us, loop 17/16 ns/step" in render(results)
    speeds[0]["memoryNs"], speeds[1]["memoryNs"] = 141.2, 187.9  # recorded since the evening of 4 December
    assert "loop 17/16 ns/step, memory 141/188 ns/read" in render(results)


def test_rounds_are_a_positive_number_and_three_by_default() -> None:
    assert build_parser().parse_args([]).rounds == 3
    assert build_parser().parse_args(["--rounds", "1"]).rounds == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rounds", bad])
