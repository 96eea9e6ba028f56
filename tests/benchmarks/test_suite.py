"""The benchmark suite's bookkeeping: which topics the cases share, the check of every worker
case's output against the embedded runner's, and what the ratios and goals leave out.

Until 3 December every case that read the pre-loaded trace also shared its tick topic, and
case d read case c's flush ticks (event time past every window and the retention) before
most of its documents: it declared 20,000 to 22,000 of 50,000 orders and looked 2x faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.metrics import Metrics as WorkerMetrics
from agents.rollup import merge_metrics
from benchmarks.machine import host_speed, one_line, random_cycle
from benchmarks.measure import (
    Collector,
    CpuShares,
    Sampler,
    by_phase,
    histogram_summary,
    machine_cpu_seconds,
    percentiles,
)
from benchmarks.report import _row, add_ratios, render
from benchmarks.runs import TraceInfo, output_check, wait_complete
from benchmarks.startup import own_settings
from benchmarks.suite import DEFAULT_ORDER_RATES, build_parser, latency_cases, order_rates, run_settings
from clearance.settings import Settings
from ops.broker import broker_pid
from ops.files import broker_files


def test_cases_share_the_documents_and_nothing_else() -> None:
    base = Settings()
    c = run_settings(base, "r1", "in", "c", app_id="bench-r1-c")
    d = run_settings(base, "r1", "in", "d", app_id="bench-r1-d")
    assert (c.topic_orders, c.topic_payments, c.topic_waybills) == (d.topic_orders, d.topic_payments, d.topic_waybills)
    assert c.topic_ticks != d.topic_ticks, "c's flush ticks must not reach d"
    others = [f.name for f in fields(base) if f.name.startswith("topic_")][3:]
    assert others == ["topic_matched", "topic_flagged", "topic_deadletter", "topic_ticks"]
    for name in others:
        assert getattr(c, name) != getattr(d, name)
        assert getattr(c, name) != getattr(base, name)


def _collected(*ids: str) -> Collector:
    collector = Collector(Settings())
    collector.declaration_ids.update(ids)
    return collector


def test_the_output_check_names_what_is_missing_and_what_is_not_expected() -> None:
    info = TraceInfo(messages=9, orders=3, last_app_ms=0, expected_ids=frozenset({"a/RELEASED", "b/REJECTED"}))
    assert output_check(info, _collected("a/RELEASED", "b/REJECTED")) == ""
    assert output_check(info, _collected("a/RELEASED", "b/REVIEW", "c/REJECTED")) == (
        "1 of the embedded runner's 2 declarations missing (b/REJECTED), 2 others (b/REVIEW, c/REJECTED)"
    )
    many = _collected(*(f"o{n}/RELEASED" for n in range(6)))
    assert output_check(info, many).endswith("6 others (o0/RELEASED, o1/RELEASED, o2/RELEASED, o3/RELEASED, ...)")
    assert output_check(TraceInfo(9, 3, 0), _collected("x/RELEASED")) == "", "no embedded output: not judged"


def _results(d_status: str) -> dict[str, Any]:
    machine = {"nproc": 2, "cpu": "test", "ramGB": 1, "python": "3.11", "kafka": "4", "librdkafka": "2", "faust": "0"}
    cases = {
        "a": {"status": "ok", "eventsPerSecond": 100_000.0},
        "c": {"status": "ok", "eventsPerSecond": 5_000.0, "eventsPerCpuSecond": 5_000.0},
        "d": {"status": d_status, "eventsPerSecond": 11_000.0, "eventsPerCpuSecond": 17_000.0},
        "f": {"status": "ok", "eventsPerSecond": 10_000.0, "eventsPerCpuSecond": 10_000.0},
    }
    return {"machine": machine, "parameters": {}, "cases": cases}


def test_a_case_with_wrong_output_is_in_no_ratio_and_no_goal() -> None:
    good, wrong = _results("ok"), _results("wrong output: 28,000 of the embedded runner's 50,480 declarations missing")
    add_ratios(good)
    add_ratios(wrong)
    assert good["ratios"]["d/c"] == 2.2 and "ratioToRaw" in good["cases"]["d"]
    assert "d/c" not in wrong["ratios"] and "d/c" not in wrong["cpuRatios"]
    assert "ratioToRaw" not in wrong["cases"]["d"]
    assert wrong["ratios"]["c/f"] == 0.5, "the other cases are still judged"
    text = render(wrong)
    assert "case d not judged: wrong output" in text and "two processes >=" not in text
    assert "two processes >= 1.6 x one: met" in render(good)


def test_case_t_gives_one_process_against_faust_as_the_worker_configures_it() -> None:
    results = _results("ok")
    add_ratios(results)
    assert "c/t" not in results["ratios"], "case t is not in the default set"
    results["cases"]["t"] = {"status": "ok", "eventsPerSecond": 12_500.0, "eventsPerCpuSecond": 12_000.0}
    add_ratios(results)
    assert results["ratios"]["c/t"] == 0.4 and results["ratios"]["c/f"] == 0.5
    assert results["cpuRatios"]["c/t"] == round(5_000 / 12_000, 4)
    assert "c/t 0.400" in render(results)
    assert "t" not in build_parser().parse_args([]).cases


def test_two_processes_against_one_is_also_said_from_ready_but_judged_from_the_start() -> None:
    results = _results("ok")
    results["cases"]["c"]["eventsPerSecondFromReady"] = 5_400.0
    results["cases"]["d"]["eventsPerSecondFromReady"] = 9_180.0
    add_ratios(results)
    assert results["readyRatios"] == {"d/c": 1.7}, "only the worker cases have a rate from ready"
    text = render(results)
    assert "two processes >= 1.6 x one: met (2.200; from ready 1.700)" in text
    assert "from ready (start-up left out): d/c 1.700" in text
    assert "5,000 events/s, 5,400 from ready" in text
    results["cases"]["d"]["eventsPerSecond"] = 7_500.0  # 1.5 from the start, 1.7 from ready
    add_ratios(results)
    assert "two processes >= 1.6 x one: NOT met (1.500; from ready 1.700)" in render(results)
    del results["cases"]["c"]["eventsPerSecondFromReady"]
    add_ratios(results)
    text = render(results)
    assert results["readyRatios"] == {} and "from ready (" not in text and "; from ready" not in text


def test_the_cores_each_part_used_are_named_under_two_processes_against_one() -> None:
    results = _results("ok")
    results["cases"]["c"]["cores"] = {"seconds": 80.0, "machine": 1.5, "workers": 1.0, "broker": 0.4, "bench": 0.05}
    results["cases"]["d"]["cores"] = {"seconds": 50.0, "machine": 1.96, "workers": 1.5, "broker": 0.41, "other": 0.0}
    add_ratios(results)
    text = render(results)
    assert "  c: 1.50 cores busy (workers 1.00, broker 0.40, bench 0.05) over 80 s" in text
    assert "  d: 1.96 cores busy (workers 1.50, broker 0.41, other 0.00) over 50 s" in text
    del results["cases"]["c"]["cores"]
    assert "c: " not in render(results) and "  d: 1.96 cores" in render(results), "a case without them has no line"


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_shares_tell_the_workers_from_the_broker_and_the_bench(tmp_path: Path) -> None:
    me = os.getpid()
    assert machine_cpu_seconds() > 0
    # this process stands in for a worker, and for the broker in the second span
    shares = CpuShares([me])
    shares.start()
    _spin(0.3)
    cores = shares.cores()
    assert set(cores) == {"seconds", "machine", "workers", "bench", "other"}, "no broker pid: no broker share"
    assert cores["workers"] > 0.5 and cores["bench"] > 0.5, "the spin is the worker's and this process's"
    assert cores["machine"] >= cores["workers"] - 0.1
    assert cores["other"] == pytest.approx(cores["machine"] - cores["workers"] - cores["bench"], abs=0.002)
    broker = CpuShares([], me)
    broker.start()
    _spin(0.3)
    assert broker.cores()["broker"] > 0.5 and broker.cores()["workers"] == 0
    assert CpuShares([me]).cores() == {}, "not started: no span"


def test_the_bench_takes_the_local_brokers_pid_from_its_pid_file_only_while_it_runs(tmp_path: Path) -> None:
    # ops.broker.broker_pid, as `clearance broker` reads it: a pid whose command line names the
    # broker's properties file (a stand-in process started with that path as an argument)
    files = broker_files(tmp_path, 19092)
    files.root.mkdir(parents=True)
    assert broker_pid(files) is None, "no file"
    code = "import time; time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", code, str(files.properties)]) as standin:
        try:
            # until it has exec'd: between fork and exec its command line is still this process's
            cmdline = Path(f"/proc/{standin.pid}/cmdline")
            deadline = time.monotonic() + 10
            while str(files.properties).encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)
            files.pid.write_text(f"{standin.pid}\n", encoding="ascii")
            assert broker_pid(files) == standin.pid
            files.pid.write_text(f"{os.getpid()}\n", encoding="ascii")
            assert broker_pid(files) is None, "a running process that is not this broker"
            files.pid.write_text("not a pid", encoding="ascii")
            assert broker_pid(files) is None
        finally:
            standin.kill()
    files.pid.write_text("4194304999", encoding="ascii")
    assert broker_pid(files) is None, "a pid no process has"


def test_the_table_row_marks_a_case_with_wrong_output() -> None:
    wrong = _results("wrong output: 28,000 of the embedded runner's 50,480 declarations missing")
    wrong["timestamp"], wrong["parameters"] = "2026-12-03T17:07:58", {"orders": 50_000, "messages": 151_725}
    add_ratios(wrong)
    row = _row(wrong, Path("x.json")).split(" | ")
    assert row[6] == "11,000 WRONG OUTPUT" and row[-2] == "-", "d's figure marked, d/c left out"
    assert row[-1] == "- |", "no case e: no latency while the input flows"


def test_a_run_names_its_host_kernel_and_speed_and_older_runs_still_render() -> None:
    results = _results("ok")
    results["timestamp"], results["parameters"] = "2026-12-04T15:30:00", {"orders": 50_000, "messages": 151_725}
    add_ratios(results)
    old_row, old_line = _row(results, Path("x.json")).split(" | ")[1], one_line(results["machine"])
    assert old_row == "2 x test, 1 GB, Py 3.11, Kafka 4", "no kernel, no speed"
    assert old_line.endswith("faust-streaming 0")
    results["machine"] |= {"kernel": "6.18.44-fc-v1147", "speed": {"loopNs": 31.04, "asyncioWaitUs": 59.4}}
    expected = "kernel 6.18.44-fc-v1147, asyncio wait 59 us, loop 31 ns/step"
    assert _row(results, Path("x.json")).split(" | ")[1] == f"2 x test, 1 GB, Py 3.11, Kafka 4, {expected}"
    assert one_line(results["machine"]).endswith(f"faust-streaming 0; {expected}")
    assert render(results).splitlines()[0] == one_line(results["machine"])


def test_a_host_whose_speed_moved_during_the_run_is_named_and_flagged() -> None:
    results = _results("ok")
    results["timestamp"], results["parameters"] = "2026-12-04T16:00:00", {"orders": 50_000, "messages": 151_725}
    results["machine"] |= {"kernel": "k", "speed": {"loopNs": 53.0, "asyncioWaitUs": 77.0}}
    add_ratios(results)
    results["machine"]["speedAfter"] = {"loopNs": 58.0, "asyncioWaitUs": 80.0}  # within 15%: same speed
    host = _row(results, Path("x.json")).split(" | ")[1]
    assert host.endswith("kernel k, asyncio wait 77->80 us, loop 53->58 ns/step")
    assert "moved" not in render(results)
    results["machine"]["speedAfter"] = {"loopNs": 60.0, "asyncioWaitUs": 93.0}  # the wait 21% slower at the end
    warning = [line for line in render(results).splitlines() if "moved" in line]
    assert warning == [
        "the host's speed moved during the run (asyncio wait 77 -> 93 us): its cases ran at different speeds"
    ]
    results["machine"]["speedAfter"] = {"loopNs": 40.0, "asyncioWaitUs": 77.0}  # faster counts too
    assert "(loop 53 -> 40 ns/step)" in render(results)


def test_the_memory_walk_is_one_cycle_through_every_slot() -> None:
    """Each read names the next (a dependent walk: no read can start before the one before it
    ends), and the walk meets every slot once before it comes back, so it touches all of far memory."""
    slots, first = random_cycle(10_000)
    seen, at = set(), first
    for _ in range(10_000):
        seen.add(at)
        at = slots[at]
    assert at == first and len(seen) == 10_000
    assert list(slots[:20]) != list(range(1, 21)), "in a random order, not slot after slot"


def test_the_memorys_speed_is_named_and_flagged_when_recorded() -> None:
    results = _results("ok")
    results["timestamp"], results["parameters"] = "2026-12-04T21:00:00", {"orders": 50_000, "messages": 151_725}
    results["machine"] |= {"kernel": "k", "speed": {"loopNs": 17.0, "asyncioWaitUs": 31.0, "memoryNs": 140.0}}
    add_ratios(results)
    assert one_line(results["machine"]).endswith("kernel k, asyncio wait 31 us, loop 17 ns/step, memory 140 ns/read")
    results["machine"]["speedAfter"] = {"loopNs": 17.0, "asyncioWaitUs": 31.0, "memoryNs": 200.0}
    host = _row(results, Path("x.json")).split(" | ")[1]
    assert host.endswith("kernel k, asyncio wait 31->31 us, loop 17->17 ns/step, memory 140->200 ns/read")
    warning = [line for line in render(results).splitlines() if "moved" in line]
    assert warning == [
        "the host's speed moved during the run (memory 140 -> 200 ns/read): its cases ran at different speeds"
    ]


def test_the_host_speed_is_measured_not_made_up() -> None:
    quick = host_speed(turns=200, steps=20_000, memory_steps=20_000)
    assert set(quick) == {"loopNs", "asyncioWaitUs", "memoryNs"}
    assert 0 <= quick["memoryNs"] < 100_000, "a read from far memory: nanoseconds"
    assert 0 < quick["loopNs"] < 10_000, "a for loop's step: nanoseconds"
    # a wait over four futures runs the loop at least once and builds two tasks: microseconds, many loop steps
    assert quick["asyncioWaitUs"] > 0.5 and quick["asyncioWaitUs"] * 1_000 > 5 * quick["loopNs"]


def test_the_drain_is_the_orders_completed_in_the_last_merge_wait_of_input() -> None:
    # produce times 0..9,900 ms; the last 2 s of input (8,000 ms on: 8,000 ... 9,900) drain
    produced = np.arange(0, 10_000, 100, dtype=np.int64)
    values = np.where(produced >= 8_000, 2_300, 200).astype(np.int64)
    # the join decides 150 ms (the drain: 2,200 ms) after the produce; one decidedAt unknown
    decided = produced + np.where(produced >= 8_000, 2_200, 150)
    decided[0] = -1
    phases = by_phase(produced + values, values, decided, 2_000)
    assert phases["drainSeconds"] == 2.0
    flowing, drain = phases["whileFlowing"], phases["drain"]
    assert flowing["count"] == 80 and flowing["max"] == 200
    assert flowing["toJoinDecision"]["count"] == 79 and flowing["toJoinDecision"]["max"] == 150
    assert flowing["afterJoinDecision"]["max"] == 50
    assert drain["count"] == 20 and drain["p50"] == 2_300
    assert (drain["toJoinDecision"]["p50"], drain["afterJoinDecision"]["p50"]) == (2_200, 100)
    assert percentiles(values.tolist())["p99"] == 2_300, "the drain sets the whole run's p99"
    # the replay ended later than the last completed order (an order left incomplete): the end counts
    later = by_phase(produced + values, values, decided, 2_000, end_ms=10_900)
    assert (later["whileFlowing"]["count"], later["drain"]["count"]) == (90, 10)
    empty = np.zeros(0, np.int64)
    assert by_phase(empty, empty, empty, 2_000)["whileFlowing"]["count"] == 0


def test_the_collector_reads_the_joins_decision_time_of_a_declaration() -> None:
    collector = Collector(Settings())
    collector._take(1_000, b'{"orderNo": "A1", "reasons": [], "decidedAt": "2026-11-26T20:01:02.345Z"}')
    collector._take(1_001, b'{"orderNo": "A2", "reasons": ["MISSING_PAYMENT"]}')
    collector._take(1_002, b"not json")
    assert collector.decided_ms == [1_795_723_262_345, -1, -1]
    assert collector.window_closed == [False, True, False] and collector.count == 3
    assert collector.complete == 2, "the two without a MISSING_* reason"


def test_the_first_phase_waits_for_the_declarations_decided_on_completion() -> None:
    """Window-close declarations come early (a trace's late documents close windows): counted
    with them, the first phase ended with complete sets undecided, their documents unread."""
    collector = Collector(Settings())
    collector._take(1_000, b'{"orderNo": "A1", "reasons": []}')
    collector._take(1_001, b'{"orderNo": "A2", "reasons": ["MISSING_PAYMENT"]}')
    assert wait_complete(collector, 2, stall=0.05, timeout=5)
    assert not wait_complete(collector, 2, stall=0.05, timeout=5, decided_on_completion=True)
    collector._take(1_002, b'{"orderNo": "A3", "reasons": ["PAID_AMOUNT_MISMATCH"]}')
    assert wait_complete(collector, 2, stall=0.05, timeout=5, decided_on_completion=True)


def _case_e(latencies: list[float], flowing: dict[str, Any], drain: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Case e's figures at 1,000 orders/s: the whole run's latencies, the flowing and drain phases."""
    phases = {"drainSeconds": 2.0, "whileFlowing": flowing, "drain": drain}
    case = {
        "status": "ok",
        "offeredOrderRate": 1_000.0,
        "latencyMs": percentiles(latencies),
        "latencyByPhaseMs": phases,
    }
    return case | extra


def test_the_latency_goal_is_judged_over_the_whole_run_and_while_the_input_flows() -> None:
    results = _results("ok")
    flowing: dict[str, Any] = percentiles([300.0] * 90)
    flowing["toJoinDecision"], flowing["afterJoinDecision"] = percentiles([40.0] * 90), percentiles([260.0] * 90)
    results["cases"]["e"] = _case_e([300.0] * 90 + [2_300.0] * 10, flowing, percentiles([2_300.0] * 10))
    add_ratios(results)
    text = render(results)
    assert "p99 < 500 ms at 1,000 orders/s: NOT met (2300.0 ms)" in text
    assert "while the input flows: met (p99 300.0 ms); its last 2 s (the drain: 10.0% of" in text
    assert "produce to the join's decision p50/p99 40.0/40.0 ms, then to the declaration 260.0/260.0 ms" in text
    results["timestamp"], results["parameters"] = "2026-12-04T03:05:00", {"orders": 100, "messages": 300}
    row = _row(results, Path("x.json")).split(" | ")
    assert row[-1] == "300 |" and row[7] == "at 1,000/s: 300 / 2300 / 2300 / 2300", "the cell names e's rate"
    results["cases"]["e"]["offeredOrderRate"] = 300.0
    assert "while the input flows: not judged" in render(results)


def test_case_e_with_more_processes_is_reported_and_not_judged_against_the_one_process_goal() -> None:
    assert build_parser().parse_args([]).e_processes == 1
    assert build_parser().parse_args(["--e-processes", "2"]).e_processes == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--e-processes", "0"])
    results = _results("ok")
    results["cases"]["e"] = _case_e([300.0] * 100, percentiles([300.0] * 100), {}, processes=2)
    add_ratios(results)
    reported = render(results).splitlines()
    for line in (
        "  e --processes 2, fixed offered rate    ok",
        "  p99 < 500 ms at 1,000 orders/s: not judged with 2 processes (300.0 ms)",
        "    while the input flows: not judged (p99 300.0 ms)",
    ):
        assert any(said.startswith(line) for said in reported), line
    results.update(timestamp="2026-12-05T12:00:00", parameters={"orders": 100, "messages": 300})
    assert _row(results, Path("x.json")).split(" | ")[7] == "at 1,000/s, 2 processes: 300 / 300 / 300 / 300"
    results["cases"]["e"]["processes"] = 1
    assert "p99 < 500 ms at 1,000 orders/s: met (300.0 ms)" in render(results)


def test_case_e_runs_once_per_offered_rate_each_judged() -> None:
    assert order_rates("1000,3000") == DEFAULT_ORDER_RATES == (1_000.0, 3_000.0)
    assert order_rates("300") == (300.0,)
    for bad in ("fast", "1000,0", "1000,1000", "-5", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            order_rates(bad)
    assert latency_cases((1_000.0, 3_000.0, 2_500.5)) == [("e", 1_000.0), ("e3000", 3_000.0), ("e2500.5", 2_500.5)]
    assert build_parser().parse_args([]).order_rate == (1_000.0, 3_000.0)
    results = _results("ok")
    for name, rate, p99 in (("e", 1_000.0, 400.0), ("e3000", 3_000.0, 9_000.0)):
        results["cases"][name] = {"status": "ok", "offeredOrderRate": rate, "latencyMs": percentiles([p99] * 10)}
    text = render(results)
    assert "e3000 1 worker process, fixed offered rate" in text
    assert "p99 < 500 ms at 1,000 orders/s: met (400.0 ms)" in text
    assert "p99 < 500 ms at 3,000 orders/s: NOT met (9000.0 ms)" in text


@contextmanager
def _serving(body: bytes) -> Iterator[str]:
    """A /metrics URL on 127.0.0.1 that answers `body`, served from a thread while in the block."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's name
            pass

    server = HTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_a_metric_is_summed_over_its_label_sets_and_the_workers_and_names_only_itself() -> None:
    body = (
        b"# HELP clearance_merge_broker_asks_total ListOffsets\n"
        b"# TYPE clearance_merge_broker_asks_total counter\n"
        b'clearance_merge_broker_asks_total{topic="orders"} 3.0\n'
        b'clearance_merge_broker_asks_total{topic="payments"} 4.0\n'
        b"clearance_merge_broker_asks_total_other 100.0\n"
        b"clearance_windows_open 7.0\n"
    )

    with _serving(body) as url:
        sampler = Sampler(Settings(), "g", None, metric_urls=[url, url])
        assert sampler.metric_total("clearance_merge_broker_asks_total") == 14
        assert sampler.windows_open() == 14
        assert Sampler(Settings(), "g", None, metric_urls=["http://127.0.0.1:9/metrics"]).windows_open() == -1


def test_a_histogram_s_quantiles_are_interpolated_within_their_bucket_as_prometheus_does() -> None:
    inf = float("inf")
    got = histogram_summary([(0.1, 50.0), (0.25, 90.0), (1.0, 99.0), (inf, 100.0)], 20.0)
    assert got == {"count": 100, "mean": 200.0, "p50": 100.0, "p90": 250.0, "p99": 1000.0}
    half = histogram_summary([(0.1, 0.0), (0.5, 10.0), (inf, 10.0)], 3.0)
    assert half["p50"] == 300.0 and half["p90"] == 460.0, "linear from the bucket's lower bound"
    assert histogram_summary([(0.1, 0.0), (inf, 4.0)], 8.0)["p99"] == 100.0, "+Inf: the largest finite bound"
    assert histogram_summary([], 0.0) == {"count": 0} == histogram_summary([(inf, 0.0)], 0.0)


def test_the_workers_input_wait_is_read_from_their_metrics_and_reported_for_case_e() -> None:
    worker = WorkerMetrics()
    for waited_ms in [20] * 60 + [400] * 30 + [3_000] * 10:
        worker.observe_input_wait(waited_ms)
    body = worker.render([]).encode()

    with _serving(body) as url:
        waited = Sampler(Settings(), "g", None, metric_urls=[url, url]).histogram("clearance_input_wait_seconds")
        assert waited["count"] == 200 and waited["mean"] == 432.0, "two workers' counts summed"
        # 120 at 20 ms (<= 25), 60 at 400 (<= 500), 20 at 3,000 (<= 5,000): ranks 100, 180 and 198
        assert waited["p50"] == 20.8 and waited["p90"] == 500.0 and waited["p99"] == 4_750.0
        assert Sampler(Settings(), "g", None, metric_urls=["http://127.0.0.1:9/metrics"]).histogram("x") == {}
    # two processes under one supervisor: one /metrics, each sample labelled with its process first
    with _serving(merge_metrics({"p0": body.decode(), "p1": body.decode()}).encode()) as url:
        rolled = Sampler(Settings(), "g", None, metric_urls=[url]).histogram("clearance_input_wait_seconds")
        assert rolled == waited
    results = _results("ok")
    results["cases"]["e"] = {
        "status": "ok",
        "offeredOrderRate": 1_000.0,
        "latencyMs": percentiles([300.0] * 10),
        "inputWaitMs": waited,
    }
    assert (
        "produce to the join taking a document (the whole run, from the worker's histogram) p50/p90/p99 21/500/4750 ms"
        in render(results)
    )


def test_each_timed_start_has_topics_a_group_and_a_data_directory_of_its_own(tmp_path: Path) -> None:
    base = Settings()
    one, two = own_settings(base, tmp_path, 17001), own_settings(base, tmp_path, 17002)
    names = [f.name for f in fields(base) if f.name.startswith("topic_")]
    assert names and all(getattr(one, n) != getattr(two, n) for n in names)
    assert all(getattr(one, n).startswith(f"{getattr(base, n)}.startup-") for n in names)
    assert one.app_id != two.app_id and one.app_id.startswith("startup-")
    assert Path(one.data_dir).parent == tmp_path and one.data_dir != two.data_dir
    assert (one.web_port, two.web_port) == (17001, 17002)


def test_the_workers_log_level_and_the_told_end_are_options() -> None:
    """The workers log at WARNING unless told (`--log-level`, any case; an unknown level is
    refused), and a pre-loaded backlog is told where it ends unless `--untold-end`."""
    parsed = build_parser().parse_args([])
    assert (parsed.log_level, parsed.untold_end) == ("WARNING", False)
    parsed = build_parser().parse_args(["--log-level", "info", "--untold-end"])
    assert (parsed.log_level, parsed.untold_end) == ("INFO", True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log-level", "loud"])
