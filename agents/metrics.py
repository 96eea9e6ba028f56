"""The worker's metrics, exposed at /metrics with prometheus-client.

Plain counters in one process (one worker = one process): the agents bump them with
`inc(name, label, by)`, and a collector turns them into Prometheus families at scrape
time: counters end in `_total`, gauges (open windows, consumer lag per topic and
partition) are read at scrape time from the processors and the consumer (`render`'s
argument), `clearance_receipt_to_decision_seconds` is a histogram of decidedAt -
receivedAt with buckets past ten minutes, and `clearance_input_wait_seconds` one of how long
each input document waited between its Kafka timestamp and the join taking it. Each Metrics
has its own registry, so tests can make as many as they like.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: Prometheus knows when a counter starts

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
    "rocksdb_memory_bytes",
    "malloc_bytes",
    "deadlines_indexed",
    "producer_queue_messages",
    "merge_buffered",
    "input_paused",
    "input_partitions_paused",
    "candidates_held",
    "consumer_acked_offsets",
    "gc_collections",
    "gc_seconds",
    "candidates_handed_over",
    "candidates_out",
    "candidate_records_out",
    "merge_broker_asks",
    "merge_wakeups",
    "flushes_waited",
]
Gauge = tuple[MetricName, dict[str, str], float]

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
    "rocksdb_memory_bytes": (
        "gauge",
        "RocksDB memory of the tables, by kind: the shared block cache (memtables charged to it included) "
        "and its pinned part, the memtables, the table readers outside the cache",
    ),
    "deadlines_indexed": ("gauge", "entries of the in-memory deadline index (open and retained orders, stale ones)"),
    "merge_buffered": ("gauge", "documents received and not yet applied (the join's merge queues, unacked)"),
    "input_paused": ("counter", "times an input partition was paused because its merge queue was full, by topic"),
    "input_partitions_paused": (
        "gauge",
        "input topic partitions paused now because their merge queue is full (CLEARANCE_MERGE_BUFFER)",
    ),
    "candidates_held": ("gauge", "candidates the quota stage holds until every join partition's watermark passes them"),
    "consumer_acked_offsets": (
        "gauge",
        "acked offsets Faust's consumer keeps until its next commit (Consumer._acked), all partitions",
    ),
    "producer_queue_messages": ("gauge", "records in librdkafka's queue or in flight (native memory)"),
    "candidates_handed_over": (
        "counter",
        "candidates not decided again after a graceful hand-over (decided and delivered by the previous owner)",
    ),
    "candidates_out": ("counter", "candidates the join sent to the quota stage"),
    "candidate_records_out": (
        "counter",
        "records that carried them: one per candidates partition per watermark or ack batch (agents/batch.py)",
    ),
    "merge_broker_asks": (
        "counter",
        "ListOffsets requests of the merge and the idle rule (is anything unread?) that the consumer's "
        "own fetches could not answer, by topic",
    ),
    "merge_wakeups": (
        "counter",
        "ticks sent to a partition when the merge's wait for its silent topics ended (agents/wakeup.py)",
    ),
    "flushes_waited": (
        "counter",
        'flush ticks ({"eventTime": ms}) that came before the input sent ahead of them was received, and waited for it',
    ),
    "malloc_bytes": ("gauge", "the C allocator (glibc): in use, free but kept, mmapped (all arenas)"),
    "gc_collections": ("counter", "collections of Python's cyclic GC, by generation (0 young, 2 full)"),
    "gc_seconds": ("counter", "seconds spent in Python's cyclic GC, by generation"),
}

# Seconds; past the contract's ten minutes (600 s). monitor/metrics.py uses the same bounds (a test checks it).
RECEIPT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
# Seconds an input document waited before the join took it: the fetch and Faust's queues while the
# worker keeps up (tens of ms), a backlog's age when it does not.
INPUT_WAIT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0)


@dataclass
class Metrics:
    """Counters keyed by (metric, label value), a receipt-to-decision histogram, and their registry."""

    counts: Counter[tuple[MetricName, str]] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    last_tick: float = 0.0
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=False))
    _resent: int = 0
    _gauges: list[Gauge] = field(default_factory=list)
    receipt: MsHistogram = field(
        default_factory=lambda: MsHistogram(
            "clearance_receipt_to_decision_seconds",
            "decidedAt - receivedAt of published declarations (receivedAt: the completing document Kafka timestamp)",
            RECEIPT_BUCKETS,
        )
    )
    input_wait: MsHistogram = field(
        default_factory=lambda: MsHistogram(
            "clearance_input_wait_seconds",
            "how long an input document waited from its Kafka timestamp until the join took it "
            "(the fetch and the worker's queues; a backlog's age)",
            INPUT_WAIT_BUCKETS,
        )
    )

    def __post_init__(self) -> None:
        self.registry.register(_Counts(self))

    def inc(self, name: MetricName, label: str = "", by: int = 1) -> None:
        self.counts[(name, label)] += by

    @property
    def resent(self) -> int:
        """Emits re-sent after a restart or rebalance (in doubt): `metrics.resent += 1`."""
        return self._resent

    @resent.setter
    def resent(self, value: int) -> None:
        self._resent = value

    def observe_receipt(self, decided_at_ms: int, received_at_ms: int | None) -> None:
        """One published declaration's receipt-to-decision time (nothing when receivedAt is unknown)."""
        if received_at_ms is not None:
            self.receipt.observe(max(decided_at_ms - received_at_ms, 0))

    def observe_input_wait(self, waited_ms: int) -> None:
        """One input document taken by the join `waited_ms` after its Kafka timestamp."""
        self.input_wait.observe(waited_ms)

    def render(self, gauges: Iterable[Gauge]) -> str:
        """Prometheus text exposition format 0.0.4, with `gauges` read now."""
        self._gauges = list(gauges)
        try:
            return generate_latest(self.registry).decode()
        finally:
            self._gauges = []


class _Counts(Collector):
    """The counters and the scrape-time gauges of one Metrics as Prometheus families."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        rows: dict[MetricName, list[tuple[dict[str, str], float]]] = {}
        for (name, label), value in sorted(m.counts.items()):
            rows.setdefault(name, []).append((_labels(name, label), float(value)))
        for name, labels, gauge in m._gauges:
            rows.setdefault(name, []).append((labels, gauge))
        for name, samples in rows.items():
            kind, help_ = _HELP[name]
            keys = sorted({k for labels, _ in samples for k in labels})
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(f"clearance_{name}", help_, labels=keys)
            for labels, sample in samples:
                family.add_metric([labels.get(k, "") for k in keys], sample)
            yield family
        resent = CounterMetricFamily("clearance_outbox_resent", "emits re-sent after a restart or rebalance (in doubt)")
        resent.add_metric([], float(m.resent))
        yield resent
        yield m.receipt.family()
        yield m.input_wait.family()


class MsHistogram:
    """A Prometheus histogram in seconds of observations in whole milliseconds, counted per bucket
    here (a list index and an add per observation; prometheus-client's Histogram took a lock and
    walked its buckets in Python, ~1% of the worker's GIL at 1,000 orders/s for the receipt alone)
    and turned into a family at scrape time. Every bound is a whole number of milliseconds, so
    comparing milliseconds counts each observation in the bucket the seconds would (`le`: a bound
    is inclusive)."""

    __slots__ = ("name", "help", "buckets", "_bounds_ms", "counts", "sum_ms")

    def __init__(self, name: str, help_: str, buckets: tuple[float, ...]) -> None:
        bounds_ms = tuple(round(bound * 1000) for bound in buckets)
        whole = all(abs(ms - bound * 1000) < 1e-6 for ms, bound in zip(bounds_ms, buckets, strict=True))
        if not whole or list(bounds_ms) != sorted(set(bounds_ms)):
            raise ValueError(f"{name}: bounds must rise in whole milliseconds: {buckets}")
        self.name, self.help, self.buckets, self._bounds_ms = name, help_, buckets, bounds_ms
        self.counts = [0] * (len(buckets) + 1)  # the last: past every bound (+Inf)
        self.sum_ms = 0

    def observe(self, ms: int) -> None:
        self.counts[bisect_left(self._bounds_ms, ms)] += 1
        self.sum_ms += ms

    def family(self) -> HistogramMetricFamily:
        """The counts as a Prometheus histogram (cumulative, `+Inf` last)."""
        family = HistogramMetricFamily(self.name, self.help)
        buckets, running = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        family.add_metric([], buckets, sum_value=self.sum_ms / 1000)
        return family


def _labels(name: MetricName, label: str) -> dict[str, str]:
    if not label:
        return {}
    key = {
        "declarations_out": "status",
        "dead_letters": "error",
        "windows_completed": "partition",
        "windows_closed_incomplete": "partition",
    }.get(name, "topic" if name.startswith(("documents_in", "input_", "merge_broker")) else "label")
    return {key: label}
