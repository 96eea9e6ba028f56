"""The worker's counters and their Prometheus text form (served at /metrics).

Plain counters in one process (one worker = one process): the agents bump them,
the web view renders them. Gauges (open windows, consumer lag) are read at
scrape time from the processors and the consumer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

MetricName = Literal[
    "documents_in",
    "documents_redelivered",
    "declarations_out",
    "review_after_decision",
    "dead_letters",
    "internal_errors",
    "windows_open",
    "windows_completed",
    "windows_closed_incomplete",
    "consumer_lag",
    "input_redelivered_dropped",
    "input_gap_messages_refilled",
]

_HELP: dict[MetricName, tuple[str, str]] = {
    "documents_in": ("counter", "input messages consumed, by topic"),
    "documents_redelivered": ("counter", "documents ignored as redelivered (same guid)"),
    "declarations_out": ("counter", "declarations published, by status"),
    "review_after_decision": ("counter", "REVIEW records for documents after the decision"),
    "dead_letters": ("counter", "messages sent to the dead-letter topic, by error"),
    "internal_errors": ("counter", "unexpected exceptions (dead-lettered as INTERNAL_ERROR)"),
    "windows_open": ("gauge", "open match windows on this worker"),
    "windows_completed": ("counter", "windows decided with all three documents, by partition"),
    "windows_closed_incomplete": ("counter", "windows closed with a document missing, by partition"),
    "consumer_lag": ("gauge", "messages behind the high watermark, by topic and partition"),
    "input_redelivered_dropped": ("counter", "input messages dropped as already handled (offset order), by topic"),
    "input_gap_messages_refilled": (
        "counter",
        "input messages the consumer skipped, read directly and handled in order, by topic",
    ),
}


@dataclass
class Metrics:
    """Counters keyed by (metric, label value)."""

    counts: Counter[tuple[MetricName, str]] = field(default_factory=Counter)
    resent: int = 0
    started: float = field(default_factory=time.monotonic)
    last_tick: float = 0.0

    def inc(self, name: MetricName, label: str = "", by: int = 1) -> None:
        self.counts[(name, label)] += by

    def render(self, gauges: Iterable[tuple[MetricName, dict[str, str], float]]) -> str:
        """Prometheus text exposition format 0.0.4."""
        by_name: dict[MetricName, list[str]] = {}
        for (name, label), value in sorted(self.counts.items()):
            by_name.setdefault(name, []).append(_line(name, _labels(name, label), value))
        for name, labels, gauge in gauges:
            by_name.setdefault(name, []).append(_line(name, labels, gauge))
        out: list[str] = []
        for name, lines in by_name.items():
            kind, help_ = _HELP[name]
            out += [f"# HELP clearance_{name} {help_}", f"# TYPE clearance_{name} {kind}", *lines]
        out += [
            "# HELP clearance_outbox_resent emits re-sent after a restart or rebalance (in doubt)",
            "# TYPE clearance_outbox_resent counter",
            f"clearance_outbox_resent {self.resent}",
        ]
        return "\n".join(out) + "\n"


def _labels(name: MetricName, label: str) -> dict[str, str]:
    if not label:
        return {}
    key = {
        "declarations_out": "status",
        "dead_letters": "error",
        "windows_completed": "partition",
        "windows_closed_incomplete": "partition",
    }.get(name, "topic" if name.startswith(("documents_in", "input_")) else "label")
    return {key: label}


def _line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        return f"clearance_{name}{{{inner}}} {value:g}"
    return f"clearance_{name} {value:g}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
