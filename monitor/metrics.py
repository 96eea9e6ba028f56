"""The monitor's figures as Prometheus metrics (`/metrics`), read from the tally at scrape time.

Counters end in `_total` and the receipt-to-decision histogram's buckets reach past ten
minutes (the contract's "within 10 minutes" is the 600 s bucket). The counters cover the
current window (`--since`): with the default, a China-time day, they restart at midnight,
which Prometheus treats as a counter reset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.tally import STATUSES, Tally

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: Prometheus knows when a counter starts

# Seconds. The workers' histogram (agents/metrics.py) uses the same bounds (a test checks it).
RECEIPT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


class FloorCollector(Collector):
    """Reads the tally (under its lock) and the last group sample at every scrape."""

    def __init__(self, tally: Tally, lock: threading.Lock, group: Callable[[], dict[str, Any] | None]) -> None:
        self.tally = tally
        self.lock = lock
        self.group = group

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            yield from self._tally_metrics()
        yield from self._group_metrics(self.group())

    def _tally_metrics(self) -> Iterator[Metric]:
        t = self.tally
        decided = CounterMetricFamily(
            "clearance_monitor_declarations",
            "declarations counted (once per declarationId), by status",
            labels=["status"],
        )
        for status in STATUSES:
            decided.add_metric([status], t.statuses[status])
        yield decided
        reasons = CounterMetricFamily(
            "clearance_monitor_reasons", "reason codes on counted declarations", labels=["reason"]
        )
        for code, n in sorted(t.reasons.items()):
            reasons.add_metric([code], n)
        yield reasons
        yield CounterMetricFamily("clearance_monitor_value_cleared_yuan", "dutiable value released or X-rayed, CNY",
                                  value=t.cleared_fen / 100)  # fmt: skip
        yield CounterMetricFamily("clearance_monitor_tax_assessed_yuan", "tax of released or X-rayed declarations, CNY",
                                  value=t.tax_fen / 100)  # fmt: skip
        yield CounterMetricFamily(
            "clearance_monitor_dead_letters", "dead letters counted", value=sum(t.dead_reasons.values())
        )
        yield CounterMetricFamily("clearance_monitor_unreadable", "records on the result topics that were not readable",
                                  value=t.unreadable)  # fmt: skip
        yield CounterMetricFamily("clearance_monitor_repeats", "declarations seen again (same declarationId)",
                                  value=t.repeats)  # fmt: skip
        lat = t.latency
        counts = lat.cumulative(RECEIPT_BUCKETS)
        buckets = [(_le(b), float(n)) for b, n in zip(RECEIPT_BUCKETS, counts, strict=True)]
        buckets.append(("+Inf", float(lat.count)))
        yield HistogramMetricFamily(
            "clearance_monitor_receipt_to_decision_seconds",
            "decidedAt - receivedAt of counted declarations that carry receivedAt",
            buckets=buckets,
            sum_value=lat.sum_seconds(),
        )

    def _group_metrics(self, group: dict[str, Any] | None) -> Iterator[Metric]:
        if group is None:
            return
        yield GaugeMetricFamily("clearance_group_members", "members of the worker group", value=group["members"])
        lag = GaugeMetricFamily(
            "clearance_group_lag", "input messages not yet committed by the worker group", labels=["topic", "partition"]
        )
        for p in group["partitions"]:
            lag.add_metric([p["topic"], str(p["partition"])], p["lag"])
        yield lag


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


def registry(collector: FloorCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
