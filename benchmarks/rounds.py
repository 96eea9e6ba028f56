"""`clearance bench --rounds N`: the cases behind the ratios run N times, a round after a round,
so that each ratio is taken within one round, at one speed of the host.

This VM's speed moves within the hour (RESULTS.md, "The host since 3 December"). On 4 December,
ten minutes apart on the same host and code, Faust's floor (case f) read 5,870 and then 4,506
events/s while one worker read 2,532 and 2,471: c/f went from 0.431 to 0.548, across the goal's
0.5. A ratio of two cases run minutes apart says the host as much as the code. With rounds, the
rounds' figures are all kept; a case's headline figures are those of its median round (by
events/s), and each ratio is the median of the ratios taken within the rounds. Both medians are
the lower one for an even number of rounds, so every figure reported is one a round measured.
"""

from __future__ import annotations

from statistics import median_low
from typing import Any

# The cases that run once per round, in this order: the ratios' cases and the embedded runner.
# Case e (latency at a fixed rate) and case s (the soak) run once, after the rounds.
ROUND_CASES = "aftbcd"
# What a round keeps of each case beside the median round's full entry.
_KEPT = ("status", "eventsPerSecond", "eventsPerSecondFromReady", "eventsPerCpuSecond", "wallSeconds")


def ok(case: dict[str, Any]) -> bool:
    """A case whose figures count: not failed, and its output the embedded runner's."""
    return bool(case.get("status", "ok") == "ok")


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's entry from its rounds, in the order they ran.

    The entry is the median round's (by events/s, among the rounds that passed), with `round`
    (1-based) naming it and `rounds` holding every round's figures. A round that failed or
    published wrong output gives the case its status: the case is then in no ratio and no goal,
    and says which round."""
    if len(runs) == 1:
        return runs[0]
    passed = sorted((r for r in runs if ok(r) and "eventsPerSecond" in r), key=lambda r: r["eventsPerSecond"])
    chosen = passed[(len(passed) - 1) // 2] if passed else runs[0]
    entry = dict(chosen)
    entry["round"] = next(i for i, run in enumerate(runs, 1) if run is chosen)
    entry["rounds"] = [{key: run[key] for key in _KEPT if key in run} for run in runs]
    failed = [(i, run) for i, run in enumerate(runs, 1) if not ok(run)]
    if failed:
        first, run = failed[0]
        entry["status"] = run["status"]
        entry["failedRound"] = first
    return entry


def ratio(top: dict[str, Any], bottom: dict[str, Any], key: str) -> tuple[float | None, list[float]]:
    """`key`'s ratio top/bottom: the median of the rounds' own ratios and the list of them (rounds
    where either case has no figure are left out); without rounds, the one ratio and []."""
    over_rounds, under_rounds = top.get("rounds"), bottom.get("rounds")
    if over_rounds and under_rounds and len(over_rounds) == len(under_rounds):
        values = [
            round(over[key] / under[key], 4)
            for over, under in zip(over_rounds, under_rounds, strict=True)
            if ok(over) and ok(under) and over.get(key) and under.get(key)
        ]
        return (median_low(values) if values else None), values
    over, under = top.get(key), bottom.get(key)
    return (round(over / under, 4) if over and under else None), []
