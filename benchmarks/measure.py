"""End-to-end measurement on Kafka: declarations out, latency, lag, RSS and state size.

`Collector` consumes the matched and flagged topics from the start (a thread; the
consume loop waits in librdkafka, outside the GIL) and keeps, per declaration, its
Kafka timestamp (the worker's producer CreateTime), its orderNo and whether it is a
window-close (MISSING_*) declaration. `Sampler` records once a second the worker
group's consumer lag on the input topics (committed offsets vs high watermarks,
via AdminClient), the declarations seen so far, the workers' RSS and the size of
their data dirs. Latency = declaration timestamp - produce time of the order's last
document (ops.replay records that, equal to the input message's CreateTime).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # exported, untyped

from clearance.clock import wall_ms as now_ms
from clearance.kafka import client_config
from clearance.settings import Settings

_MISSING = ("MISSING_ORDER", "MISSING_PAYMENT", "MISSING_WAYBILL")


class Collector(threading.Thread):
    """Reads every declaration on the matched and flagged topics until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="collector", daemon=True)
        self.settings = settings
        self.timestamps: list[int] = []
        self.order_nos: list[str] = []
        self.window_closed: list[bool] = []
        self.decided_ms: list[int] = []  # each declaration's decidedAt (the join's wall clock), -1 unknown
        self.declaration_ids: set[str] = set()
        self.complete = 0  # declarations decided on completion (no MISSING_* reason), repeats included
        self._stop_event = threading.Event()
        self._ready = threading.Event()

    @property
    def count(self) -> int:
        return len(self.timestamps)

    def run(self) -> None:
        consumer = Consumer(
            {
                **client_config(self.settings),
                "group.id": f"bench-collector-{os.getpid()}-{id(self)}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        topics = (self.settings.topic_matched, self.settings.topic_flagged)
        consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(self.settings.partitions)])
        self._ready.set()
        try:
            while not self._stop_event.is_set():
                for msg in consumer.consume(5000, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    self._take(msg.timestamp()[1], msg.value() or b"")
        finally:
            consumer.close()

    def _take(self, timestamp: int, value: bytes) -> None:
        try:
            record = orjson.loads(value)
            order_no, reasons = str(record.get("orderNo")), record.get("reasons") or []
            self.declaration_ids.add(f"{record.get('declarationId')}/{record.get('status')}")
            decided = _utc_ms(record.get("decidedAt"))
        except (orjson.JSONDecodeError, AttributeError):
            order_no, reasons, decided = "", [], -1
        self.order_nos.append(order_no)
        self.decided_ms.append(decided)
        closed = any(r in _MISSING for r in reasons)
        self.window_closed.append(closed)
        self.complete += not closed
        self.timestamps.append(timestamp)  # last: `count` only grows once the row is whole

    def wait_ready(self) -> None:
        self._ready.wait(30)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def wait_for(self, expected: int, timeout: float, *, idle: float = 0.0) -> bool:
        """Block until `expected` declarations arrived (then `idle` s more); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count < expected:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        time.sleep(idle)
        return True


def _utc_ms(text: object) -> int:
    """`decidedAt` (ISO-8601 UTC, pipeline.timeconv.iso_utc_ms) -> epoch ms; -1 when absent or not that."""
    if not isinstance(text, str):
        return -1
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)
    except ValueError:
        return -1


def vm_kb(pid: int, field_name: str) -> int:
    """A /proc/PID/status field in kB (VmHWM: peak RSS, VmRSS: current); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat); 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, every core together (/proc/stat: user, nice,
    system, irq, softirq and steal; not idle or iowait); 0.0 where /proc/stat is unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process, every thread (the bench's collector and sampler)."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuShares:
    """Who used the machine's cores over a span: the workers, the broker (when its pid is
    known: the local one), this process (the bench's collector and sampler) and the rest
    (the replayer, `--processes N`'s supervisor, the system; a few hundredths below 0 is the
    clock ticks' rounding). On a 2-core machine with the broker beside the workers, this is
    what bounds two processes against one (d/c)."""

    workers: Sequence[int]
    broker: int | None = None
    _start: tuple[float, ...] = field(default=(), init=False)  # set by `start()`

    def _now(self) -> tuple[float, ...]:
        broker = cpu_seconds(self.broker) if self.broker else 0.0
        workers = sum(cpu_seconds(pid) for pid in self.workers)
        return (time.monotonic(), machine_cpu_seconds(), workers, broker, own_cpu_seconds())

    def start(self) -> None:
        self._start = self._now()

    def cores(self) -> dict[str, float]:
        """Cores used on average since `start()`: each part's CPU seconds / the span's seconds
        ({} before `start()`)."""
        if not self._start:
            return {}
        now = self._now()
        span = now[0] - self._start[0]
        if span <= 0:
            return {}
        machine, workers, broker, bench = ((b - a) / span for a, b in zip(self._start[1:], now[1:], strict=True))
        shares = {"seconds": span, "machine": machine, "workers": workers}
        if self.broker:
            shares["broker"] = broker
        shares["bench"] = bench
        shares["other"] = machine - workers - broker - bench
        return {name: round(value, 3) for name, value in shares.items()}


def du_bytes(path: Path) -> int:
    """Disk usage of a directory tree (allocated blocks, as `du`)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # RocksDB removed it meanwhile
    return total


@dataclass
class Sample:
    t_ms: int
    lag: int
    declarations: int
    rss_kb: int
    state_bytes: int
    windows_open: int = -1


@dataclass(eq=False)
class Sampler(threading.Thread):
    """Once a second: group lag, declarations so far, workers' RSS, state size."""

    settings: Settings
    group: str
    collector: Collector | None
    pids: Sequence[int] = ()
    data_dirs: Sequence[Path] = ()
    metric_urls: Sequence[str] = ()
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    peak_hwm_kb: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="sampler", daemon=True)
        self._stop_event = threading.Event()
        self._admin = AdminClient(client_config(self.settings))
        self._partitions = [
            TopicPartition(t, p) for t in self.settings.input_topics for p in range(self.settings.partitions)
        ]

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def sample(self) -> Sample:
        for pid in self.pids:
            self.peak_hwm_kb[pid] = max(self.peak_hwm_kb.get(pid, 0), vm_kb(pid, "VmHWM"))
        sample = Sample(
            t_ms=now_ms(),
            lag=self.lag(),
            declarations=self.collector.count if self.collector else 0,
            rss_kb=sum(vm_kb(pid, "VmRSS") for pid in self.pids),
            state_bytes=sum(du_bytes(d) for d in self.data_dirs),
            windows_open=self.windows_open(),
        )
        self.samples.append(sample)
        return sample

    def windows_open(self) -> int:
        """Sum of the workers' `clearance_windows_open` gauges (/metrics); -1 if any is unreadable."""
        return self.metric_total("clearance_windows_open")

    def _lines(self) -> list[str] | None:
        """Every line of every worker's /metrics; None if any is unreadable."""
        lines: list[str] = []
        for url in self.metric_urls:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own localhost URL
                    lines += answer.read().decode().splitlines()
            except (urllib.error.URLError, OSError):
                return None
        return lines

    def metric_total(self, name: str) -> int:
        """Sum of one metric over the workers' /metrics, every label set; -1 if any is unreadable."""
        lines = self._lines()
        if lines is None:
            return -1
        return int(sum(float(line.split()[-1]) for line in lines if line.startswith((name + " ", name + "{"))))

    def histogram(self, name: str) -> dict[str, float | int]:
        """A Prometheus histogram summed over the workers' /metrics: `histogram_quantile`'s
        p50, p90 and p99 (ms), its mean and count; {} if any worker is unreadable."""
        lines = self._lines()
        if lines is None:
            return {}
        counts: dict[float, float] = {}
        total = 0.0
        for line in lines:  # `--processes N`: the supervisor's, each sample labelled with its process too
            if line.startswith(name + "_bucket{") and 'le="' in line:
                bound = float(line.split('le="', 1)[1].split('"', 1)[0])
                counts[bound] = counts.get(bound, 0.0) + float(line.split()[-1])
            elif line.startswith((name + "_sum ", name + "_sum{")):
                total += float(line.split()[-1])
        return histogram_summary(sorted(counts.items()), total)

    def lag(self) -> int:
        """Sum over the input partitions of high watermark - committed offset (-1 if unknown)."""
        try:
            request = [ConsumerGroupTopicPartitions(self.group, list(self._partitions))]
            committed = self._admin.list_consumer_group_offsets(request)[self.group].result(timeout=5)
            ends = self._admin.list_offsets({tp: OffsetSpec.latest() for tp in self._partitions}, request_timeout=5)  # type: ignore[no-untyped-call]
            high = {(tp.topic, tp.partition): future.result().offset for tp, future in ends.items()}
        except KafkaException:
            return -1
        total = 0
        for tp in committed.topic_partitions:
            end = high.get((tp.topic, tp.partition), 0)
            total += end - (tp.offset if tp.offset >= 0 else 0)
        return total

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def histogram_summary(cumulative: Sequence[tuple[float, float]], total_s: float) -> dict[str, float | int]:
    """count, mean and p50/p90/p99 in ms of a histogram given as (upper bound in s, cumulative
    count) pairs, `+Inf` last: Prometheus's `histogram_quantile` (linear within a bucket; a
    quantile in the `+Inf` bucket is the largest finite bound)."""
    if not cumulative or cumulative[-1][1] <= 0:
        return {"count": 0}
    count = cumulative[-1][1]
    out: dict[str, float | int] = {"count": int(count), "mean": round(total_s / count * 1000, 1)}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        rank, lower, below = q * count, 0.0, 0.0
        for bound, running in cumulative:
            if running >= rank:
                if bound == float("inf"):
                    value = lower
                else:
                    inside = running - below
                    value = lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
                out[label] = round(value * 1000, 1)
                break
            lower, below = bound, running
    return out


def percentiles(values: Iterable[float]) -> dict[str, float | int]:
    """count, p50, p95, p99, max and mean (numpy, linear interpolation), rounded to 0.1."""
    array = np.fromiter(values, dtype=np.float64)
    if array.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {
        "count": int(array.size),
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(float(array.max()), 1),
        "mean": round(float(array.mean()), 1),
    }


def latencies(collector: Collector, produced: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(declaration timestamp, latency ms, its decidedAt) of every decided-on-completion declaration with a
    known produce time.

    Window-close declarations (MISSING_*) are left out: they wait for event time, by design.
    Only the first declaration per order counts (a REVIEW after the decision is a later record).
    decidedAt is when the join found the set complete (-1 unknown); the quota stage keeps it.
    """
    seen: set[str] = set()
    stamps: list[int] = []
    values: list[int] = []
    decided: list[int] = []
    rows = zip(collector.timestamps, collector.order_nos, collector.window_closed, collector.decided_ms, strict=False)
    for ts, order_no, closed, decided_ms in rows:
        if closed or order_no in seen or order_no not in produced:
            continue
        seen.add(order_no)
        stamps.append(ts)
        values.append(ts - produced[order_no])
        decided.append(decided_ms)
    return (
        np.asarray(stamps, dtype=np.int64),
        np.asarray(values, dtype=np.int64),
        np.asarray(decided, dtype=np.int64),
    )


def by_phase(
    stamps: np.ndarray, values: np.ndarray, decided: np.ndarray, drain_ms: int, end_ms: int | None = None
) -> dict[str, Any]:
    """The latencies of `latencies` split by when the order's last document was produced.

    "whileFlowing": before the replay's last `drain_ms` (the merge wait): what a stream that goes
    on sees. "drain": within it. Those documents had less than the merge wait of later input
    behind them, and the ones that end a topic of their partition had none to show the merge
    that nothing earlier was still on its way: they wait for the flush tick the replay ends with
    (case e's does), or without one, out the merge wait (pipeline/merge.py); a run's whole p99
    is theirs once they are more than 1% of it.
    `end_ms`: when the replay produced its last document (the last of some order, complete or
    not); None: the last produce time among `stamps - values`.

    Each phase is also split where the join decided (decidedAt, when known): "toJoinDecision",
    from the produce to the join (the fetch, the merge, the join step), and "afterJoinDecision",
    from there to the declaration (the candidates' batch and hop, the quota stage's wait for
    every join partition's watermark, its step and the produce).
    """
    phases: dict[str, Any] = {"drainSeconds": round(drain_ms / 1000, 3)}
    produced = stamps - values
    end = end_ms if end_ms is not None else int(produced.max()) if produced.size else 0
    for name, mask in (("whileFlowing", produced <= end - drain_ms), ("drain", produced > end - drain_ms)):
        phases[name] = percentiles(values[mask].tolist())
        known = mask & (decided >= 0)
        phases[name]["toJoinDecision"] = percentiles((decided[known] - produced[known]).tolist())
        phases[name]["afterJoinDecision"] = percentiles((stamps[known] - decided[known]).tolist())
    return phases


def per_second(stamps: np.ndarray, start_ms: int) -> list[list[float]]:
    """[[second, count], ...] of a timestamp array, from `start_ms`."""
    if stamps.size == 0:
        return []
    seconds = (stamps - start_ms) // 1000
    counts = np.bincount(seconds - seconds.min())
    return [[float(seconds.min() + i), int(c)] for i, c in enumerate(counts)]


def latency_series(stamps: np.ndarray, values: np.ndarray, start_ms: int) -> list[list[float]]:
    """[[second, p50, p99], ...] of latencies by the second their declaration was published."""
    if stamps.size == 0:
        return []
    seconds = (stamps - start_ms) // 1000
    rows: list[list[float]] = []
    for second in np.unique(seconds):
        chunk = values[seconds == second]
        p50, p99 = np.percentile(chunk, [50, 99])
        rows.append([float(second), round(float(p50), 1), round(float(p99), 1)])
    return rows


def samples_dict(samples: Sequence[Sample], start_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "t": round((s.t_ms - start_ms) / 1000, 1),
            "lag": s.lag,
            "declarations": s.declarations,
            "rssMB": round(s.rss_kb / 1024, 1),
            "stateMB": round(s.state_bytes / 1e6, 2),
            "windowsOpen": s.windows_open,
        }
        for s in samples
    ]
