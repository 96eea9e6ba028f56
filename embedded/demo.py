"""`clearance demo`: a generated 11.11 peak-hour trace through the embedded pipeline.

Generates the trace (`clearance generate`), runs it with `clearance run`'s code, prints a
readable report (released / inspection / review / rejected, top reasons, dead letters,
throughput, decision delay in event time) and writes a PNG of traffic and decisions.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clearance.cli import main as clearance
from clearance.settings import Settings
from clearance.traces import TRACE_FILES
from embedded.runner import run_trace
from monitor.report import write_report
from pipeline.engine import PARSERS
from pipeline.errors import InvalidRecord
from pipeline.timeconv import app_time_ms

STATUSES = ("RELEASED", "INSPECTION", "REVIEW", "REJECTED")
_COLOURS = {"RELEASED": "#2e7d32", "INSPECTION": "#1565c0", "REVIEW": "#f9a825", "REJECTED": "#c62828"}


def first_seen(trace: Path) -> dict[str, int]:
    """orderNo -> the earliest appTime (ms) of its valid documents."""
    first: dict[str, int] = {}
    for kind, name in TRACE_FILES:
        path = trace / name
        if not path.exists():
            continue
        parse = PARSERS[kind]
        for line in path.read_bytes().splitlines():
            try:
                doc = parse(line)
            except InvalidRecord:
                continue  # a dead letter, not a document
            if doc.order_no not in first or doc.app_time_ms < first[doc.order_no]:
                first[doc.order_no] = doc.app_time_ms
    return first


def _declarations(out: Path) -> list[dict[str, Any]]:
    rows = []
    for name in ("matched.jsonl", "flagged.jsonl"):
        rows += [orjson.loads(line) for line in (out / name).read_bytes().splitlines()]
    return rows


def _event_ms(iso: str) -> int:
    # eventTime is "YYYY-MM-DDThh:mm:ss+08:00"; app_time_ms reads the CST digits.
    return app_time_ms(iso[0:4] + iso[5:7] + iso[8:10] + iso[11:13] + iso[14:16] + iso[17:19])


def report(decls: list[dict[str, Any]], first: dict[str, int], summary: Any) -> tuple[str, np.ndarray]:
    main = [d for d in decls if "DOCUMENT_AFTER_DECISION" not in d["reasons"]]
    statuses = Counter(d["status"] for d in main)
    reasons = Counter(code for d in decls for code in d["reasons"])
    complete = [d for d in main if not any(code.startswith("MISSING_") for code in d["reasons"])]
    delays = np.array(
        [(_event_ms(d["eventTime"]) - first[d["orderNo"]]) / 1000 for d in complete if d["orderNo"] in first],
        dtype=float,
    )
    total = max(len(main), 1)
    lines = ["", "Three-document comparison, 11.11 peak hour (embedded)", "=" * 54]
    lines += [f"  {s:<11}{statuses[s]:>9,}  {statuses[s] / total:6.1%}" for s in STATUSES]
    lines.append(f"  {'orders':<11}{len(main):>9,}   + {reasons['DOCUMENT_AFTER_DECISION']:,} late-document reviews")
    lines.append("top reasons")
    lines += [f"  {code:<28}{n:>8,}" for code, n in reasons.most_common(8)]
    lines.append(f"dead letters  {summary.dead_letters:,} (kept with their original bytes in deadletter.jsonl)")
    lines.append(
        f"throughput    {summary.rate:,.0f} events/s ({summary.messages:,} messages in {summary.seconds:.1f} s)"
    )
    if delays.size:
        p50, p95, p99 = np.percentile(delays, [50, 95, 99])
        lines.append(
            f"decision delay (event time, first document -> decision, complete sets): p50 {p50:.0f} s, "
            f"p95 {p95:.0f} s, p99 {p99:.0f} s, max {delays.max():.0f} s"
        )
        lines.append(f"window closed with documents missing: {len(main) - len(complete):,} (decided 24 h later)")
        within = float(np.mean(delays <= 600))
        lines.append(f"decided within 10 minutes of the first document: {within:.1%}")
    return "\n".join(lines), delays


def plot(decls: list[dict[str, Any]], first: dict[str, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = min(first.values())
    minute = 60_000
    arrivals = (np.array(list(first.values()), dtype=np.int64) - start) / minute
    decided = {
        s: np.array([_event_ms(d["eventTime"]) - start for d in decls if d["status"] == s]) / minute for s in STATUSES
    }
    # The hour of traffic and the window closes 24 h later would make one unreadable
    # axis: plot the traffic span plus 30 minutes; later decisions are counted in the title.
    span = int(arrivals.max()) + 30
    bins = np.arange(span + 1)
    late = sum(int((v > span).sum()) for v in decided.values())
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    top.hist(arrivals, bins=bins, color="#546e7a")
    top.set_ylabel("new orders / min")
    top.set_title("11.11 peak hour: traffic (first document of each order) and decisions")
    bottom.hist(
        [decided[s][decided[s] <= span] for s in STATUSES],
        bins=bins,
        stacked=True,
        label=list(STATUSES),
        color=[_COLOURS[s] for s in STATUSES],
    )
    bottom.set_title(f"{late:,} more decisions later, when their 24 h windows closed (missing documents)", fontsize=9)
    bottom.set_ylabel("declarations / min")
    bottom.set_xlabel("minutes since the first document (event time)")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="clearance demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000, help="orders in the generated trace (default 20,000)")
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--dir", type=Path, default=Path("out/demo"), help="where the trace and the outputs go")
    args = parser.parse_args(argv)
    trace, out = args.dir / "trace", args.dir / "output"
    started = time.perf_counter()
    # The generator is a shell of its own: reached through its command, not imported (layers).
    code = clearance(
        ["generate", str(trace), "--preset", "peak-hour", "--orders", str(args.orders), "--seed", str(args.seed)]
    )
    if code != 0:
        return code
    info = orjson.loads((trace / "trace.json").read_bytes())
    settings = Settings.from_env().with_overrides(regime=str(info["regime"]["name"]))
    summary = run_trace(trace, out, settings.rules(), progress=sys.stderr.isatty())
    decls = _declarations(out)
    first = first_seen(trace)
    text, _ = report(decls, first, summary)
    print(text)
    png = args.dir / "demo.png"
    plot(decls, first, png)
    html = args.dir / "demo.html"
    write_report(out, html, title="Clearance demo: a peak hour")
    print(f"outputs       {out}/matched.jsonl, flagged.jsonl, deadletter.jsonl")
    print(f"plot          {png}")
    print(f"report        {html}")
    print(f"total         {time.perf_counter() - started:.1f} s")
    return 0
