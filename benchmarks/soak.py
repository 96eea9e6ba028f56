"""Case s, the soak: one worker's resident memory against the orders it has read.

One `clearance worker` process (fresh data directory) is started on empty input topics
and left to settle; its resident set then is "at ready". The trace is offered at `rate`
messages/s (`clearance bench --soak-rate`, 1,000 by default: a park through a long peak, the
pace issue 13 measured; the worker keeps up, so what it holds is what is open), or, with no
rate, produced at full speed: a backlog the worker reads ahead into as far as its buffers
let it. Then the flush ticks move event time past every window and the retention of decided
orders, and the worker is watched for `settle` seconds more with every window closed (by
default past the worker's next `malloc_trim`, CLEARANCE_MALLOC_TRIM_SECONDS + 15 s):
"after close". Once a second: RSS
(/proc), the order messages the worker has read (its `documents_in` counter; declarations
trail them: the quota stage holds candidates for event-time order), declarations so far,
open windows and, when the worker reports them, RocksDB's own memory figures and glibc's
(`clearance_rocksdb_memory_bytes`, `clearance_malloc_bytes` on /metrics). Issue 13's goal:
the resident set after close within 50 MB of where it started.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.processes import free_ports
from benchmarks.measure import Collector, Sampler, vm_kb
from benchmarks.runs import TraceInfo, flush_phase, open_collector, wait_complete
from benchmarks.workers import start_worker
from clearance.clock import wall_ms as now_ms
from clearance.settings import Settings
from ops.replay import Pacing, replay

GOAL_MB = 50.0
MARKS = (20_000, 50_000, 100_000)
# Memory figures the worker reports on /metrics (agents/stores.py, agents/memory.py), by kind.
_MEMORY_METRICS = {"clearance_rocksdb_memory_bytes": "rocksdb", "clearance_malloc_bytes": "malloc"}
_DEADLINES = "clearance_deadlines_indexed"
_QUEUED = "clearance_producer_queue_messages"
_BUFFERED = "clearance_merge_buffered"
_PAUSED = "clearance_input_partitions_paused"
_HELD = "clearance_candidates_held"
_ACKED = "clearance_consumer_acked_offsets"
_COUNTS = {  # counts, not bytes: metric -> its name in the samples
    _DEADLINES: "deadlinesIndexed",
    _QUEUED: "producerQueued",
    _BUFFERED: "mergeBuffered",
    _PAUSED: "inputsPaused",
    _HELD: "candidatesHeld",
    _ACKED: "ackedOffsets",
}


@dataclass
class MemorySample:
    t_ms: int
    declarations: int
    rss_kb: int
    windows_open: int
    orders_read: int  # order messages the worker consumed (its documents_in counter); -1 unknown
    native: dict[str, int] = field(default_factory=dict)  # RocksDB and malloc figures, bytes


@dataclass(eq=False)
class MemorySampler(threading.Thread):
    """Once a second: the worker's RSS, the declarations so far, its open windows and RocksDB figures."""

    pid: int
    collector: Collector
    metrics_url: str
    orders_topic: str
    interval: float = 1.0
    samples: list[MemorySample] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="memory-sampler", daemon=True)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def sample(self) -> MemorySample:
        windows, orders, native = self._scrape()
        taken = MemorySample(now_ms(), self.collector.count, vm_kb(self.pid, "VmRSS"), windows, orders, native)
        self.samples.append(taken)
        return taken

    def _scrape(self) -> tuple[int, int, dict[str, int]]:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1) as answer:  # noqa: S310 - our own localhost URL
                text = answer.read().decode()
        except (urllib.error.URLError, OSError):
            return -1, -1, {}
        windows, orders, native = -1, 0, {}
        for line in text.splitlines():
            if line.startswith("clearance_windows_open"):
                windows = int(float(line.split()[-1]))
            elif line.startswith("clearance_documents_in_total{") and f'topic="{self.orders_topic}"' in line:
                orders += int(float(line.split()[-1]))
            elif (name := line.split(" ", 1)[0]) in _COUNTS:
                native[_COUNTS[name]] = int(float(line.split()[-1]))
            elif line.startswith(tuple(f"{name}{{" for name in _MEMORY_METRICS)):
                prefix = _MEMORY_METRICS[line.split("{", 1)[0]]
                kind = line.split('kind="', 1)[1].split('"', 1)[0]
                native[f"{prefix} {kind}"] = int(float(line.split()[-1]))
        return windows, orders, native

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def _forgotten(sampler: MemorySampler, timeout: float) -> float | None:
    """Seconds until the worker reports an empty deadline index (every retained order
    forgotten: the flush passes the retention too), None if it does not within `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        last = sampler.samples[-1] if sampler.samples else None
        if last is not None and last.windows_open == 0:
            if "deadlinesIndexed" not in last.native:
                return None  # a worker that does not report its deadline index
            if last.native["deadlinesIndexed"] == 0:
                return round(time.monotonic() - began, 1)
        time.sleep(1)
    return None


def _megabytes(native: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 2**20, 1) for k, v in native.items() if k not in _COUNTS.values()}


def _mb(kb: float) -> float:
    return round(kb / 1024, 1)


def _rss_at(samples: list[MemorySample], orders: int) -> float | None:
    """RSS (MB) at the first sample with at least `orders` order messages read by the worker."""
    for s in samples:
        if s.orders_read >= orders:
            return _mb(s.rss_kb)
    return None


def soak_case(
    settings: Settings,
    trace: Path,
    info: TraceInfo,
    work: Path,
    *,
    settle: float | None = None,
    warmup: float = 5.0,
    rate: float | None = None,
) -> dict[str, Any]:
    """Run the soak; return its figures (MB) and the per-second samples."""
    collector = open_collector(settings, work)
    own = settings.with_overrides(data_dir=str(work / "worker"), web_port=free_ports(1)[0], processes=1)
    worker = start_worker(own, work / "worker.log")
    result: dict[str, Any] = {"processes": 1, "offeredMessagesPerSecond": rate or None}
    sampler = MemorySampler(worker.pid, collector, f"http://127.0.0.1:{own.web_port}/metrics", settings.topic_orders)
    group = Sampler(settings, settings.app_id, None)  # only for its windows gauge reader in the flush
    group.metric_urls = [sampler.metrics_url]
    t0 = now_ms()
    try:
        if not worker.ready():
            raise RuntimeError(f"worker not ready; see {worker.log}")
        time.sleep(warmup)
        if worker.process.poll() is not None:  # ready() may have heard another process on the port
            raise RuntimeError(f"worker exited ({worker.process.returncode}); see {worker.log}")
        ready = [sampler.sample() for _ in range(3)]
        result["rssAtReadyMB"] = _mb(sum(s.rss_kb for s in ready) / len(ready))
        sampler.start()
        began = time.monotonic()
        replay(trace, settings, Pacing("rate", rate) if rate else None)
        result["replaySeconds"] = round(time.monotonic() - began, 1)
        # Declarations trail the input (the quota stage waits for every partition's watermark):
        # on a busy machine the first came 2 minutes after the replay. The flush would wait for
        # unread documents itself (agents/join.py); waiting here keeps the phases' figures apart.
        result["complete"] = wait_complete(
            collector, info.expected_complete, stall=120, timeout=3600, startup=600, decided_on_completion=True
        )
        result["seconds"] = round(time.monotonic() - began, 1)
        result["declarations"] = collector.count
        result["rssBeforeFlushMB"] = _mb(vm_kb(worker.pid, "VmRSS"))
        result.update(flush_phase(settings, info, collector, group, [worker]))
        result["rssAtCloseMB"] = _mb(vm_kb(worker.pid, "VmRSS"))
        result["forgetSeconds"] = _forgotten(sampler, timeout=300)
        if settle is None:  # past the worker's next malloc_trim: its free memory is given back by then
            settle = max(30.0, settings.malloc_trim_seconds + 15.0)
        time.sleep(settle)
        last = sampler.samples[-5:]
        result["rssAfterCloseMB"] = _mb(sum(s.rss_kb for s in last) / max(len(last), 1))
        result["nativeAfterCloseMB"] = _megabytes(last[-1].native) if last else {}
        result["deadlinesIndexedAfterClose"] = last[-1].native.get("deadlinesIndexed") if last else None
        result["settleSeconds"] = settle
    finally:
        result["peakRssMB"] = {str(worker.pid): _mb(vm_kb(worker.pid, "VmHWM"))}
        sampler.stop()
        result["exitCodes"] = [worker.stop()]
        collector.stop()
    samples = sampler.samples
    result["rssAtOrdersMB"] = {str(n): _rss_at(samples, n) for n in MARKS}
    if "rssAfterCloseMB" in result:
        grew = round(result["rssAfterCloseMB"] - result["rssAtReadyMB"], 1)
        result["goal"] = {"afterCloseMinusReadyMB": grew, "limitMB": GOAL_MB, "met": grew <= GOAL_MB}
    result["memorySamples"] = [
        {
            "t": round((s.t_ms - t0) / 1000, 1),
            "declarations": s.declarations,
            "ordersRead": s.orders_read,
            "rssMB": _mb(s.rss_kb),
            "windowsOpen": s.windows_open,
            **(
                {"nativeMB": _megabytes(s.native), **{k: s.native.get(k) for k in _COUNTS.values()}} if s.native else {}
            ),
        }
        for s in samples
    ]
    return result


def brief(case: dict[str, Any]) -> str:
    """One line: RSS at ready, at the marks, peak, after close, and the goal."""
    if "rssAtReadyMB" not in case:
        return ""
    marks = ", ".join(f"{int(n):,}: {mb}" for n, mb in case.get("rssAtOrdersMB", {}).items() if mb is not None)
    peak = max(case.get("peakRssMB", {"": 0}).values())
    goal = case.get("goal", {})
    verdict = "met" if goal.get("met") else "NOT met"
    rate = case.get("offeredMessagesPerSecond")
    pace = f"offered at {rate:,.0f} messages/s" if rate else "offered all at once (a backlog)"
    return (
        f"{pace}: RSS MB at ready {case['rssAtReadyMB']}, at orders {{{marks}}}, peak {peak}, "
        f"after close {case.get('rssAfterCloseMB')} (+{goal.get('afterCloseMinusReadyMB')}; goal <= {GOAL_MB:.0f}: "
        f"{verdict})"
    )


def plot(case: dict[str, Any], path: Path, title: str) -> Path | None:
    """RSS against declarations (top) and against time with RocksDB's figures (bottom)."""
    samples = case.get("memorySamples") or []
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, low) = plt.subplots(2, 1, figsize=(10, 8))
    read = [s for s in samples if s.get("ordersRead", -1) >= 0]  # -1: /metrics did not answer
    top.plot([s["ordersRead"] for s in read], [s["rssMB"] for s in read], label="RSS")
    top.axhline(case["rssAtReadyMB"], color="grey", linestyle=":", linewidth=0.8, label="at ready")
    top.axhline(case["rssAtReadyMB"] + GOAL_MB, color="red", linestyle="--", linewidth=0.8, label="ready + 50 MB")
    top.set_xlabel("orders read by the worker")
    top.set_ylabel("resident set (MB)")
    times = [s["t"] for s in samples]
    low.plot(times, [s["rssMB"] for s in samples], label="RSS")
    kinds = sorted({k for s in samples for k in s.get("nativeMB", {})})
    for kind in kinds:
        known = [s for s in samples if kind in s.get("nativeMB", {})]
        low.plot([s["t"] for s in known], [s["nativeMB"][kind] for s in known], label=kind)
    closed = next((s["t"] for s in samples if s["declarations"] >= case.get("declarations", 0) and s["t"] > 0), None)
    if closed is not None:
        low.axvline(closed, color="grey", linestyle=":", linewidth=0.8)
    low.set_xlabel("seconds since ready")
    low.set_ylabel("MB")
    for axis in (top, low):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
