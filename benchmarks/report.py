"""Benchmark output: ratios to the raw limit, the JSON summary, a PNG plot and the RESULTS.md table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import rounds
from benchmarks.machine import host_line, one_line, speed_moved, speeds_line
from benchmarks.soak import brief as soak_brief

# Issue 12's goals: one process >= 5,000 events/s and >= 0.5 x Faust's floor, two processes
# >= 1.6 x one, p99 < 500 ms at 1,000 orders/s offered.
GOAL_EVENTS = 5_000.0
GOAL_C_OVER_F = 0.5
GOAL_D_OVER_C = 1.6
GOAL_P99_MS = 500.0
GOAL_P99_RATE = 1_000.0
_TABLE_START = "<!-- bench-table:start -->"
_TABLE_END = "<!-- bench-table:end -->"
_TITLES = {
    "a": "raw limit (consume + orjson.loads)",
    "b": "embedded runner",
    "c": "1 worker process, pre-loaded",
    "d": "--processes 2, pre-loaded",
    "e": "1 worker process, fixed offered rate",
    "f": "Faust floor (read, parse, ack)",
    "t": "Faust floor as the worker runs it",
    "s": "soak: 1 worker, memory against orders",
}
# The ratios the issue asks for (numerator, denominator): one process against Faust's floor and
# the raw loop, two processes against one, and Faust's floor against the raw loop; and (case t,
# when run) one process against Faust's floor as the worker configures Faust.
RATIOS = (("c", "f"), ("c", "a"), ("d", "c"), ("f", "a"), ("c", "t"))
# Each kind of ratio (the figure it divides) and, with rounds, where the rounds' own are kept
_KINDS = (
    ("eventsPerSecond", "ratios", "roundRatios"),
    # The same per CPU second of the process(es) doing the work: what a shared, loaded
    # machine does not distort (d/c per CPU second says what a second process costs).
    ("eventsPerCpuSecond", "cpuRatios", "roundCpuRatios"),
    # The same from each case's /readyz (its start-up left out): the worker cases only
    ("eventsPerSecondFromReady", "readyRatios", "roundReadyRatios"),
)


def title(name: str, case: dict[str, Any] | None = None) -> str:
    """A case's title; "e3000" and the like are case e at another rate, `case` (its figures) says
    how many processes case e ran."""
    processes = (case or {}).get("processes", 1)
    if name[0] == "e" and processes > 1:
        return f"--processes {processes}, fixed offered rate"
    return _TITLES.get(name) or _TITLES[name[0]]


def add_ratios(results: dict[str, Any]) -> None:
    """Each case's events/s as a ratio to the raw limit of the same run; `ratios`: c/f, c/a, d/c, f/a, c/t.

    With rounds (`--rounds`), each ratio is the median of the ratios within the rounds, and
    `roundRatios` (`roundCpuRatios`, `roundReadyRatios`) lists them (benchmarks/rounds.py)."""
    cases = _judged(results["cases"])
    raw = cases.get("a", {})
    for case in cases.values():
        value, _ = rounds.ratio(case, raw, "eventsPerSecond")
        if value:
            case["ratioToRaw"] = value
    for key, field, round_field in _KINDS:
        medians: dict[str, float] = {}
        by_round: dict[str, list[float]] = {}
        for top, bottom in RATIOS:  # a case that failed or published wrong output is in no ratio
            value, values = rounds.ratio(cases.get(top, {}), cases.get(bottom, {}), key)
            if value is not None:
                medians[f"{top}/{bottom}"] = value
            if values:
                by_round[f"{top}/{bottom}"] = values
        results[field] = medians
        if by_round:
            results[round_field] = by_round


def brief(case: dict[str, Any]) -> str:
    parts = [case.get("status", "ok")]
    if "eventsPerSecond" in case:
        parts.append(f"{case['eventsPerSecond']:,.0f} events/s")
    if case.get("eventsPerSecondFromReady"):
        parts.append(f"{case['eventsPerSecondFromReady']:,.0f} from ready")
    if case.get("eventsPerCpuSecond"):
        parts.append(f"{case['eventsPerCpuSecond']:,.0f} events per CPU-s")
    if "rssAtReadyMB" in case:
        parts.append(soak_brief(case))
    if "latencyMs" in case and case["latencyMs"].get("count"):
        lat = case["latencyMs"]
        parts.append(f"latency p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms")
    return ", ".join(parts)


def _judged(cases: dict[str, Any]) -> dict[str, Any]:
    """The cases whose figures count: not failed, output the embedded runner's."""
    return {name: case for name, case in cases.items() if rounds.ok(case)}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _goals(
    cases: dict[str, Any],
    ratios: dict[str, float],
    ready_ratios: dict[str, float],
    by_round: dict[str, list[float]] | None = None,
) -> list[str]:
    spread = {name: f"; rounds {_listed(values)}" for name, values in (by_round or {}).items()}
    counted = _judged(cases)
    lines = [f"case {name} not judged: {case['status']}" for name, case in cases.items() if name not in counted]
    cases = counted
    c = cases.get("c", {})
    if "eventsPerSecond" in c:
        lines.append(
            f"one worker >= {GOAL_EVENTS:,.0f} events/s: {_verdict(c['eventsPerSecond'] >= GOAL_EVENTS)} "
            f"({c['eventsPerSecond']:,.0f})"
        )
    if "c/f" in ratios:
        lines.append(
            f"one worker >= {GOAL_C_OVER_F} x Faust's floor: {_verdict(ratios['c/f'] >= GOAL_C_OVER_F)} "
            f"({ratios['c/f']:.3f}{spread.get('c/f', '')})"
        )
    if "d/c" in ratios:
        # judged from each process's start, as case c's events/s; from ready said beside it
        ready = f"; from ready {ready_ratios['d/c']:.3f}" if "d/c" in ready_ratios else ""
        lines.append(
            f"two processes >= {GOAL_D_OVER_C} x one: {_verdict(ratios['d/c'] >= GOAL_D_OVER_C)} "
            f"({ratios['d/c']:.3f}{spread.get('d/c', '')}{ready})"
        )
        lines += [f"  {name}: {cores_line(cases[name]['cores'])}" for name in "cd" if cases.get(name, {}).get("cores")]
    for e in (case for name, case in cases.items() if name.startswith("e")):
        lines += _latency_goal(e)
    flush = c.get("afterFlush")
    if flush:
        lines.append(
            f"state after windows close: {flush['windowsOpen']} open windows, {flush['stateMB']} MB on disk "
            f"(before: {c.get('windowsOpenBeforeFlush')} open, {c.get('stateBeforeFlushMB')} MB)"
        )
    return lines


def cores_line(cores: dict[str, float]) -> str:
    """A case's use of the machine's cores from ready to its last declaration, by part."""
    parts = ", ".join(f"{name} {cores[name]:.2f}" for name in ("workers", "broker", "bench", "other") if name in cores)
    return f"{cores.get('machine', 0):.2f} cores busy ({parts}) over {cores.get('seconds', 0):.0f} s"


def _latency_goal(e: dict[str, Any]) -> list[str]:
    """The p99 goal's lines for one run of case e: the whole run, then while the input flowed."""
    lines: list[str] = []
    if e.get("latencyMs", {}).get("count"):
        p99 = e["latencyMs"]["p99"]
        rate = e.get("offeredOrderRate", 0)
        processes = e.get("processes", 1)
        if processes > 1:  # the goal is one worker process's
            judged = f"not judged with {processes} processes"
        elif rate >= GOAL_P99_RATE:
            judged = _verdict(p99 < GOAL_P99_MS)
        else:
            judged = f"not judged below {GOAL_P99_RATE:,.0f} orders/s"
        lines.append(f"p99 < {GOAL_P99_MS:,.0f} ms at {rate:,.0f} orders/s: {judged} ({p99} ms)")
        phases = e.get("latencyByPhaseMs", {})
        flowing, drain = phases.get("whileFlowing", {}), phases.get("drain", {})
        if flowing.get("count"):
            judged = (
                _verdict(flowing["p99"] < GOAL_P99_MS) if rate >= GOAL_P99_RATE and processes == 1 else "not judged"
            )
            share = drain.get("count", 0) / (drain.get("count", 0) + flowing["count"])
            tail = f"p99 {drain['p99']} ms" if drain.get("count") else "none"
            lines.append(
                f"  while the input flows: {judged} (p99 {flowing['p99']} ms); its last {phases['drainSeconds']:g} s "
                f"(the drain: {share:.1%} of the declarations): {tail}"
            )
            join, after = flowing.get("toJoinDecision", {}), flowing.get("afterJoinDecision", {})
            if join.get("count") and after.get("count"):
                lines.append(
                    f"  while the input flows, produce to the join's decision p50/p99 {join['p50']}/{join['p99']} ms, "
                    f"then to the declaration {after['p50']}/{after['p99']} ms"
                )
    waited = e.get("inputWaitMs", {})
    if waited.get("count"):
        lines.append(
            f"  produce to the join taking a document (the whole run, from the worker's histogram) "
            f"p50/p90/p99 {waited['p50']:.0f}/{waited['p90']:.0f}/{waited['p99']:.0f} ms"
        )
    return lines


def _listed(values: list[float]) -> str:
    """The rounds' own ratios: "0.431 0.548 0.520"."""
    return " ".join(f"{v:.3f}" for v in values)


def _ratios_line(label: str, values: dict[str, float], by_round: dict[str, list[float]]) -> str:
    """One line of ratios, as "c/f 0.548"; with rounds, the rounds' own beside the median, as
    "c/f 0.548 (0.431 0.548 0.560)"."""

    def one(name: str, value: float) -> str:
        spread = by_round.get(name, [])
        return f"{name} {value:.3f}" + (f" ({_listed(spread)})" if len(spread) > 1 else "")

    return label + ", ".join(one(name, value) for name, value in values.items())


def _rounds_brief(case: dict[str, Any]) -> str:
    """A case's rounds: "; rounds 4,506 / 5,870 / 5,100 events/s, the median round 3's figures"."""
    runs = case.get("rounds") or []
    if len(runs) < 2:
        return ""
    each = " / ".join(f"{r['eventsPerSecond']:,.0f}" if "eventsPerSecond" in r else r["status"] for r in runs)
    return f"; rounds {each} events/s, the median round {case['round']}'s figures"


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [one_line(machine), f"trace: {results['parameters']}"]
    if machine.get("speedByRound"):
        lines.append(speeds_line(machine["speedByRound"]))
    for name, case in results["cases"].items():
        ratio = f" ({case['ratioToRaw']:.3f} x raw)" if "ratioToRaw" in case else ""
        lines.append(f"  {name} {title(name, case):<36} {brief(case)}{ratio}{_rounds_brief(case)}")
    count = results.get("parameters", {}).get("rounds", 1)
    label = f"ratios (the median of {count} rounds' own): " if count > 1 else "ratios: "
    labels = {"ratios": label, "cpuRatios": "per CPU second: ", "readyRatios": "from ready (start-up left out): "}
    for _, field, round_field in _KINDS:
        if results.get(field):
            lines.append(_ratios_line(labels[field], results[field], results.get(round_field, {})))
    moved = speed_moved(machine)
    if moved:
        tail = "each ratio is taken within one round" if count > 1 else "its cases ran at different speeds"
        lines.append(f"the host's speed moved during the run ({moved}): {tail}")
    ratios, ready_ratios = results.get("ratios", {}), results.get("readyRatios", {})
    goals = _goals(results["cases"], ratios, ready_ratios, results.get("roundRatios", {}))
    lines += ["goals:"] + [f"  {line}" for line in goals]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Declarations/s, latency and consumer lag over time for the worker cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = {n: c for n, c in results["cases"].items() if c.get("throughputSeries") or c.get("samples")}
    if not workers:
        return None
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for name, case in workers.items():
        series = case.get("throughputSeries") or []
        if series:
            top.plot([s[0] for s in series], [s[1] for s in series], label=f"{name}: {title(name, case)}")
        samples = case.get("samples") or []
        if samples:
            low.plot([s["t"] for s in samples], [max(s["lag"], 0) for s in samples], label=name)
        lat = case.get("latencySeries") or []
        if lat:
            mid.plot([s[0] for s in lat], [s[1] for s in lat], label=f"{name} p50")
            mid.plot([s[0] for s in lat], [s[2] for s in lat], label=f"{name} p99")
    top.set_ylabel("declarations/s")
    mid.set_ylabel("latency (ms)")
    mid.axhline(GOAL_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    low.set_ylabel("consumer lag (messages)")
    low.set_xlabel("seconds since the worker started (e: since the replay started)")
    for axis in (top, mid, low):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    fig.suptitle(f"clearance bench {results['timestamp']}: {results['parameters']['orders']:,} orders")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _row(results: dict[str, Any], json_path: Path) -> str:
    cases = results["cases"]

    def rate(name: str) -> str:
        case = cases.get(name)
        if case is None:
            return "-"
        status = str(case.get("status", "ok"))
        if "eventsPerSecond" not in case:
            return status.split(":")[0]
        ratio = f" ({case['ratioToRaw']:.2f})" if "ratioToRaw" in case and name != "a" else ""
        wrong = "" if status == "ok" else f" {status.split(':')[0].upper()}"  # e.g. WRONG OUTPUT
        return f"{case['eventsPerSecond']:,.0f}{ratio}{wrong}"

    def ratio(name: str) -> str:
        value = results.get("ratios", {}).get(name)
        return "-" if value is None else f"{value:.2f}"

    lat = cases.get("e", {}).get("latencyMs", {})
    latency = f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f}" if lat.get("count") else "-"
    e_rate = cases.get("e", {}).get("offeredOrderRate")
    if lat.get("count") and e_rate:  # the rate case e ran at (3,000 orders/s in the rows before 4 December)
        processes = cases["e"].get("processes", 1)
        latency = f"at {e_rate:,.0f}/s{f', {processes} processes' if processes > 1 else ''}: {latency}"
    flowing = cases.get("e", {}).get("latencyByPhaseMs", {}).get("whileFlowing", {})
    flowing_p99 = f"{flowing['p99']:.0f}" if flowing.get("count") else "-"
    rss = cases.get("c", {}).get("peakRssMB", {})
    state = cases.get("c", {}).get("afterFlush", {})
    m = results["machine"]
    host = host_line(m)
    host = f", {host}" if host else ""
    count = results["parameters"].get("rounds", 1)
    size = f"{results['parameters']['orders']:,} / {results['parameters']['messages']:,}"
    size += f", {count} rounds (medians)" if count > 1 else ""
    return (
        f"| {results['timestamp'][:16]} | {m['nproc']} x {m['cpu']}, {m['ramGB']} GB, Py {m['python']}, "
        f"Kafka {m['kafka']}{host} | {size} "
        f"| {rate('a')} | {rate('b')} | {rate('c')} | {rate('d')} | {latency} "
        f"| {max(rss.values()) if rss else '-'} | {state.get('windowsOpen', '-')} | {json_path.name} "
        f"| {rate('f')} | {ratio('c/f')} | {ratio('d/c')} | {flowing_p99} |"
    )


_HEADER = """| run (UTC) | machine | orders / messages | a raw events/s | b embedded (x raw) | c 1 worker (x raw) \
| d 2 workers (x raw) | e latency p50/p95/p99/max ms | c peak RSS MB | c open windows after flush | file \
| f Faust floor (x raw) | c/f | d/c | e p99 while the input flows ms |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"""


def update_table(md: Path, results: dict[str, Any], json_path: Path, png: Path | None) -> None:
    """Append this run's row to the table in RESULTS.md (created on first use)."""
    text = md.read_text(encoding="utf-8") if md.exists() else _INTRO
    if _TABLE_START not in text:
        text += f"\n{_TABLE_START}\n{_HEADER}\n{_TABLE_END}\n"
    head, rest = text.split(_TABLE_START, 1)
    table, tail = rest.split(_TABLE_END, 1)
    table = table.rstrip("\n") + "\n" + _row(results, json_path) + "\n"
    md.write_text(head + _TABLE_START + table + _TABLE_END + tail, encoding="utf-8")


_INTRO = """# Benchmark results

`clearance bench` (or `.venv/bin/python -m benchmarks.suite`) runs every case on the local
broker and appends one row here; the full figures, time series and machine description are in
`benchmarks/results/<timestamp>.json`, the plot next to it. Events/s = input messages (orders,
payments, waybills, invalid lines included) per second; `(x raw)` = ratio to case a of the same run.
Workers: from process start to the last declaration decided on completion (Faust start-up
included). Latency (case e) = Kafka timestamp of the declaration - produce time of the order's last
document, for declarations decided on completion (window-close MISSING_* ones wait for event time
by design). Goals: one worker >= 20,000 events/s; p99 < 100 ms at 3,000 orders/s; state returns
to near empty once windows close (open windows after the flush ticks).
"""
