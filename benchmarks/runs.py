"""Cases c, d, e: Faust workers on Kafka, measured end to end.

One `clearance worker` each: c and e with one process, d with `--processes 2` (two Faust
processes of one consumer group under the supervisor, agents/processes.py).

Phase 1: the workers process the input (pre-loaded, or replayed at a fixed offered
rate while they run) until every declaration that is decided on completion is out.
Phase 2: one tick per partition moves event time past every window and the
retention of decided orders; the window-close (MISSING_*) declarations follow and
the join state should empty. Faust interleaves the tick topic with the input topics
freely, so a worker holds a flush tick until it has received the input that came before
it (agents/join.py; `afterFlush.flushesWaited` counts those that waited); the ticks are
still sent only after phase 1, so that phase 1's figures end where its work does.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from benchmarks.measure import (
    Collector,
    CpuShares,
    Sampler,
    by_phase,
    cpu_seconds,
    du_bytes,
    latencies,
    latency_series,
    per_second,
    percentiles,
    samples_dict,
    vm_kb,
)
from benchmarks.workers import ROOT, Worker, settings_env, start_worker
from clearance.clock import wall_ms as now_ms
from clearance.kafka import producer_config
from clearance.settings import Settings
from clearance.topics import ensure_topics
from clearance.traces import trace_files
from ops.marks import produce_ended, produce_ticks
from ops.replay import merge, read_file, read_times


@dataclass
class TraceInfo:
    messages: int
    orders: int
    last_app_ms: int
    expected_complete: int = 0
    expected_total: int = 0
    expected_ids: frozenset[str] = frozenset()  # the embedded runner's `declarationId/status` (empty: unknown)

    @classmethod
    def scan(cls, trace: Path) -> TraceInfo:
        present = trace_files(trace)
        messages, orders, last = 0, set(), 0
        for line in merge(read_file(path, kind, rank) for rank, (kind, path) in enumerate(present)):
            messages += 1
            if line.key is not None:
                orders.add(line.key)
            last = max(last, line.time_ms or 0)
        return cls(messages, len(orders), last)


def wait_complete(
    collector: Collector,
    expected: int,
    *,
    stall: float,
    timeout: float,
    startup: float = 0.0,
    decided_on_completion: bool = False,
) -> bool:
    """Until `expected` declarations (`decided_on_completion`: of those without a MISSING_* reason),
    or no new declaration for `stall` s, or `timeout`; True if complete.

    Phase 1 counts only those decided on completion: the trace's late documents close windows
    (MISSING_*) long before the end (720 of the 30,000-order trace's 30,288 declarations), and
    counted with them the phase could end with as many complete sets not decided yet, their
    documents perhaps still unread, and send its flush ahead of them.

    Before the first declaration the workers may take `startup` s more (Faust's start, the
    group's rebalances: two processes starting together on two cores took over 20 s)."""

    def count() -> int:
        return collector.complete if decided_on_completion else collector.count

    deadline = time.monotonic() + timeout
    first = collector.count
    last_count, last_change = -1, time.monotonic()
    while count() < expected:
        now = time.monotonic()
        if collector.count != last_count:
            last_count, last_change = collector.count, now
        allowed = stall + (startup if collector.count == first else 0.0)
        if now - last_change > allowed or now > deadline:
            return False
        time.sleep(0.1)
    return True


def _replay_process(settings: Settings, trace: Path, order_rate: float, times: Path) -> subprocess.Popen[bytes]:
    env = {**settings_env(settings), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "clearance.cli", "replay", str(trace), "--order-rate", str(order_rate)]
    # The replay is the one producer of its topics and says where its input stands (`--watermarks`:
    # up to which appTime everything is delivered, where each topic ended), so the merge does not
    # wait for a topic to fall silent (pipeline/merge.py); it ends with a flush to its last appTime
    # (event time moves no further than the trace did).
    command += ["--times", str(times), "--json", "--progress", "never", "--flush-ticks", "0", "--watermarks"]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE)  # noqa: S603


def open_collector(settings: Settings, work: Path) -> Collector:
    """A worker case's start: its work directory, the topics, and the reader of the declarations, ready."""
    work.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    collector = Collector(settings)
    collector.start()
    collector.wait_ready()
    return collector


def worker_case(
    settings: Settings,
    trace: Path,
    info: TraceInfo,
    work: Path,
    *,
    processes: int,
    order_rate: float | None,
    profile: Path | None = None,
    broker: int | None = None,
    tell_end: bool = True,
) -> dict[str, Any]:
    """One worker case; `broker` is the local broker's pid, to tell its CPU from the workers'.

    A pre-loaded backlog (`order_rate` None) is told where it ends (`tell_end`), as a replay with
    `--watermarks` says it once a topic's last document is delivered: without, the last documents
    of every partition waited ~2 s (`CLEARANCE_MERGE_WAIT_SECONDS`) for the topics to fall silent,
    and that wait was in every run's seconds (benchmarks/RESULTS.md, 5 December). The ticks go
    once every process is ready: a worker keeps what they say in memory only, so a partition
    that moves in the group's first rebalance would forget them where its tick was committed."""
    collector = open_collector(settings, work)
    result: dict[str, Any] = {"processes": processes}
    own = settings.with_overrides(data_dir=str(work / "worker"), web_port=16066, processes=processes)
    started = [start_worker(own, work / "worker.log", profile=profile)]
    t0 = started[0].started_ms
    pids = worker_pids(started[0], processes)
    sampler = Sampler(
        settings,
        settings.app_id,
        collector,
        pids=pids,
        data_dirs=[Path(w.settings.data_dir) for w in started],
        metric_urls=[f"http://127.0.0.1:{w.settings.web_port}/metrics" for w in started],
    )
    sampler.start()
    try:
        replayed = None
        ready = all(w.ready() for w in started)
        t_ready = now_ms() if ready else None
        # CPU from /readyz on (start-up and recovery left out); with a pre-loaded backlog the
        # worker may have begun before the poll saw it ready, so this undercounts by < 0.25 s.
        cpu_ready = sum(cpu_seconds(pid) for pid in pids) if ready else 0.0
        shares = CpuShares(pids, broker)
        shares.start()
        if order_rate is None and tell_end:
            result["endedTicks"] = produce_ended(Producer(producer_config(settings)), settings)
        if order_rate is not None:
            if not ready:
                raise RuntimeError(f"worker not ready; see {started[0].log}")
            t0 = now_ms()
            times = work / "times.csv"
            proc = _replay_process(settings, trace, order_rate, times)
            out, _ = proc.communicate(timeout=3600)
            replayed = out.decode().strip().splitlines()[-1] if out else ""
        complete = wait_complete(
            collector, info.expected_complete, stall=20, timeout=1800, startup=100, decided_on_completion=True
        )
        cpu_whole = sum(cpu_seconds(pid) for pid in pids)
        # the machine's cores over the same span: the workers, the broker, the bench, the rest
        result["cores"] = shares.cores()
        cpu = cpu_whole - cpu_ready
        t1_count = collector.count
        stamps = np.asarray(collector.timestamps[:t1_count], dtype=np.int64)
        t_last = int(stamps.max()) if stamps.size else now_ms()
        t_first = int(stamps.min()) if stamps.size else t0
        seconds = (t_last - t0) / 1000
        result.update(
            {
                "declarations": t1_count,
                "expectedDeclarations": info.expected_complete,
                "complete": complete,
                "seconds": round(seconds, 3),
                "eventsPerSecond": round(info.messages / seconds, 1) if seconds > 0 else 0.0,
                "eventsPerSecondAfterFirstOutput": round(info.messages / max((t_last - t_first) / 1000, 1e-3), 1),
                "declarationsPerSecond": round(t1_count / seconds, 1) if seconds > 0 else 0.0,
                "startupSeconds": round((t_first - t0) / 1000, 2),
                # CPU of the worker processes from ready to the last declaration expected
                # (robust to a shared machine where events/s is not)
                "cpuSeconds": round(cpu, 2),
                "eventsPerCpuSecond": round(info.messages / cpu, 1) if cpu > 0 else 0.0,
                # the same from each process's start (start-up and recovery included): where
                # work began before the poll saw /readyz (two processes on a backlog), the
                # figure above leaves that work out
                "cpuSecondsWhole": round(cpu_whole, 2),
                "cpuSecondsAtReady": round(cpu_ready, 2),
            }
        )
        if order_rate is None and t_ready is not None and t_last > t_ready:
            # the same without the start-up: from the poll seeing /readyz (every process's) to
            # the last declaration, the span of `cores`; what a worker does once it runs
            result["eventsPerSecondFromReady"] = round(info.messages / ((t_last - t_ready) / 1000), 1)
        if replayed:
            result["replay"] = replayed
        if order_rate is not None:
            produced = read_times(work / "times.csv")
            stamps_l, values, decided = latencies(collector, produced)
            result["offeredOrderRate"] = order_rate
            result["latencyMs"] = percentiles(values.tolist())
            # the same while the input flows and in its last merge wait (the drain a replay ends with)
            result["latencyByPhaseMs"] = by_phase(
                stamps_l, values, decided, int(settings.merge_wait_seconds * 1000), max(produced.values(), default=None)
            )
            result["latencySeries"] = latency_series(stamps_l, values, t0)
        result["throughputSeries"] = per_second(stamps, t0)
        result["stateBeforeFlushMB"] = round(sum(du_bytes(Path(w.settings.data_dir)) for w in started) / 1e6, 2)
        result["windowsOpenBeforeFlush"] = sampler.windows_open()
        # ListOffsets the merge needed because no fetch since a document's arrival answered (agents/unread.py)
        result["mergeBrokerAsks"] = sampler.metric_total("clearance_merge_broker_asks_total")
        # ticks sent when a partition's merge wait ended (agents/wakeup.py)
        result["mergeWakeups"] = sampler.metric_total("clearance_merge_wakeups_total")
        # times an input partition was paused because its merge queue was full (CLEARANCE_MERGE_BUFFER)
        result["inputPaused"] = sampler.metric_total("clearance_input_paused_total")
        # produce to the join taking each document: the fetch and the worker's queues (a backlog's age)
        result["inputWaitMs"] = sampler.histogram("clearance_input_wait_seconds")
        result.update(flush_phase(settings, info, collector, sampler, started))
        wrong = output_check(info, collector)
        if wrong:
            result["status"] = f"wrong output: {wrong}"
    finally:
        for pid in pids:
            result.setdefault("peakRssMB", {})[str(pid)] = round(
                max(sampler.peak_hwm_kb.get(pid, 0), _hwm(pid)) / 1024, 1
            )
        sampler.stop()
        codes = [w.stop() for w in started]
        collector.stop()
        result["exitCodes"] = codes
        result["samples"] = samples_dict(sampler.samples, t0)
    return result


def _hwm(pid: int) -> int:
    return vm_kb(pid, "VmHWM")


def worker_pids(worker: Worker, processes: int, timeout: float = 30.0) -> list[int]:
    """The Faust processes of a spawn: itself (one process), or the supervisor's children once started."""
    if processes == 1:
        return [worker.pid]
    path = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    deadline = time.monotonic() + timeout
    children: list[int] = []
    while time.monotonic() < deadline and worker.process.poll() is None:
        children = [int(p) for p in path.read_text(encoding="ascii").split()] if path.exists() else []
        if len(children) >= processes:
            break
        time.sleep(0.1)
    if len(children) < processes:
        raise RuntimeError(f"the supervisor started {len(children)} of {processes} processes; see {worker.log}")
    return children


def output_check(info: TraceInfo, collector: Collector) -> str:
    """What differs between the declarations published and the embedded runner's (`declarationId/status`
    of each; repeats are at-least-once's and not counted); "" when they agree or nothing is known."""
    if not info.expected_ids:
        return ""
    published = collector.declaration_ids
    missing, extra = info.expected_ids - published, published - info.expected_ids
    if not missing and not extra:
        return ""
    return (
        f"{len(missing):,} of the embedded runner's {len(info.expected_ids):,} declarations missing{_named(missing)}, "
        f"{len(extra):,} others{_named(extra)}"
    )


def _named(ids: Iterable[str], most: int = 4) -> str:
    """The first `most` of `ids` in order, as " (a, b, ...)", to find them in the topics and the logs."""
    first = sorted(ids)[: most + 1]
    if not first:
        return ""
    return " (" + ", ".join(first[:most]) + (", ..." if len(first) > most else "") + ")"


def flush_phase(
    settings: Settings, info: TraceInfo, collector: Collector, sampler: Sampler, started: list[Worker]
) -> dict[str, Any]:
    """Ticks past every window and the retention; wait for the window-close declarations and an empty state."""
    past = int((settings.window_hours + settings.retention_days * 24 + 1) * 3_600_000)
    producer = Producer(producer_config(settings))
    produce_ticks(producer, settings, info.last_app_ms + past)
    producer.flush(30)
    began = time.monotonic()
    complete = wait_complete(collector, info.expected_total, stall=15, timeout=300)
    windows = -1
    for _ in range(30):  # the gauge follows the ticks within a few seconds
        windows = sampler.windows_open()
        if windows == 0:
            break
        time.sleep(1)
    return {
        "afterFlush": {
            # flush ticks that came before their partition's input was all received, and waited for it
            "flushesWaited": sampler.metric_total("clearance_flushes_waited_total"),
            "declarations": collector.count,
            "distinctDeclarations": len(collector.declaration_ids),
            "distinctOrders": len(set(collector.order_nos)),
            "expectedDeclarations": info.expected_total,
            "complete": complete,
            "seconds": round(time.monotonic() - began, 2),
            "windowsOpen": windows,
            "stateMB": round(sum(du_bytes(Path(w.settings.data_dir)) for w in started) / 1e6, 2),
        }
    }
