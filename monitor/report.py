"""`clearance run --report FILE.html` and `clearance demo`: the floor's figures of a finished run.

Reads the run's matched, flagged and dead-letter JSONL (the records the Kafka pipeline
would publish), counts them with the same Tally as the live monitor (per minute of event
time: an embedded run decides a peak hour in seconds) and writes one self-contained page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.page import report_page
from monitor.tally import Tally


def tally_run(output_dir: Path) -> Tally:
    """A Tally of everything in a run's output directory."""
    tally = Tally(clock="event")
    for name in ("matched.jsonl", "flagged.jsonl"):
        path = output_dir / name
        if path.exists():
            with path.open("rb") as lines:
                for line in lines:
                    if line.strip():
                        tally.add_declaration(line)
    dead = output_dir / "deadletter.jsonl"
    if dead.exists():
        with dead.open("rb") as lines:
            for line in lines:
                if line.strip():
                    tally.add_dead_letter(line)
    return tally


def write_report(output_dir: Path, report: Path, title: str = "Clearance report") -> dict[str, Any]:
    """Write the HTML report of a run's output; return its summary."""
    summary = tally_run(output_dir).summary(None)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(report_page(summary, title), encoding="utf-8")
    return summary
