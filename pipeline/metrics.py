"""Metric names, as a Literal so a typo fails mypy."""

from __future__ import annotations

from typing import Literal

MetricName = Literal[
    "documents_in",
    "documents_redelivered",
    "declarations_out",
    "review_after_decision",
    "dead_letters",
    "internal_errors",
    "windows_open",
    "windows_closed_incomplete",
    "consumer_lag",
    "input_redelivered_dropped",
    "input_gap_messages_refilled",
]
