"""`clearance worker --processes 2` on the real broker: one supervisor, two Faust processes, one group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from clearance.kafka import KafkaUnavailable, probe
from clearance.settings import Settings
from ops.broker import broker_pid, default_home
from ops.files import broker_files
from ops.replay import replay
from tests.integration.test_worker import (
    CLI,
    FLUSH_MS,
    ROOT,
    Worker,
    _env,
    _free_port,
    compare,
    consume,
    flush,
    generate,
    input_messages,
    produce_trace,
    run_embedded,
    total_records,
    trace_max_ms,
    wait_committed,
    wait_consumed,
    wait_ready,
)

pytestmark = pytest.mark.integration


def _per_process(supervisor: Worker, metric: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in supervisor.metrics().items():
        if name.split("{", 1)[0] in (metric, f"{metric}_total") and 'process="' in name:  # prometheus-client: _total
            process = name.split('process="', 1)[1].split('"', 1)[0]
            out[process] = out.get(process, 0.0) + value
    return out


@pytest.mark.parametrize(
    ("preload", "flush_first"),
    [(False, False), (True, False), (True, True)],
    ids=["replay-after-start", "backlog-before-start", "backlog-and-its-flush-before-start"],
)
def test_two_processes_share_the_partitions_and_stop_together(
    kafka_settings: Settings, tmp_path: Path, preload: bool, flush_first: bool
) -> None:
    """Both ways the benchmark and a deploy meet it: input replayed once the processes are ready,
    and a backlog waiting when both start together (case d of `clearance bench`). And the backlog
    with its flush ticks behind it (`clearance replay --flush-ticks` in one go): the first
    process to join takes every partition and holds each flush until its input is received; the
    second's rebalance drops those still waiting, unacked, and their new owners read them again."""
    trace = generate(tmp_path / "trace", orders=600 if preload else 300, seed=12)
    expected = run_embedded(kafka_settings, trace, tmp_path / "embedded")
    if flush_first:
        summary = replay(trace, kafka_settings, flush_ticks_ms=FLUSH_MS)
        assert summary.errors == 0 and summary.ticks == kafka_settings.partitions
    elif preload:
        produce_trace(kafka_settings, trace)
    port = _free_port()
    log = tmp_path / "supervisor.log"
    env = _env(kafka_settings, CLEARANCE_WEB_PORT=str(port), CLEARANCE_LOG_LEVEL="INFO")
    began = time.monotonic()
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [*CLI, "worker", "--processes", "2"], env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
    supervisor = Worker(proc, port, log)
    try:
        wait_ready(supervisor, timeout=60)
        ready = time.monotonic() - began
        data = Path(kafka_settings.data_dir)
        assert sorted(p.name for p in data.iterdir()) == ["p0", "p1"]
        if not preload:
            produce_trace(kafka_settings, trace)
        wait_consumed([supervisor], input_messages(trace), timeout=60)
        if not flush_first:
            # documents_in counts what a hand-over makes two processes read twice, so it can reach
            # the total before every message is handled; the flush (an explicit event time past
            # every window) is sent once the group has committed the whole input.
            wait_committed(kafka_settings)
            flush(kafka_settings, trace_max_ms(expected))
        got = consume(kafka_settings, total_records(expected), quiet_s=3.0, timeout=60.0)
        # With a backlog waiting, the first process to join takes every partition and hands half
        # over at the second's rebalance: a few repeats (same declarationId and content) are the
        # at-least-once hand-over, allowed; a lost, extra or different declaration is not.
        stats = compare(expected, got, repeats_allowed=preload)
        documents = _per_process(supervisor, "clearance_documents_in")
        print(f"\nready after {ready:.1f} s; documents per process {documents}; differential {dict(stats)}")
        # Both hold partitions: each reports the lag of its assigned input partitions. (With a
        # backlog the first process to join may handle nearly all of it before the hand-over,
        # so documents_in alone need not show both.)
        assigned = {
            name.split('process="', 1)[1].split('"', 1)[0]
            for name in supervisor.metrics()
            if name.startswith("clearance_consumer_lag{") and 'process="' in name
        }
        assert assigned == {"p0", "p1"}, assigned
        if not preload:
            assert set(documents) == {"p0", "p1"} and all(v > 0 for v in documents.values()), documents
        assert supervisor.get("/healthz")[0] == 200
        waited = int(sum(_per_process(supervisor, "clearance_flushes_waited").values()))
        code = supervisor.stop(signal.SIGTERM, timeout=60)
        assert code == 0, log.read_text()[-3000:]
    finally:
        supervisor.stop(signal.SIGKILL, timeout=10)
    text = log.read_text()
    assert "EXITED" not in text and text.count("stopped, exit code 0") == 2, text[-3000:]
    if flush_first:
        print(f"flushes that waited for their input: {waited} (a flush the rebalance dropped is read and waits again)")
        assert waited >= 1, "every flush came after its input: the run did not test the wait"


def _broker_pid(settings: Settings) -> int | None:
    """The pid of the local broker the tests run on (`clearance broker start`), None for any other."""
    host, _, port = settings.bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return None
    return broker_pid(broker_files(default_home(settings), int(port)))


def wait_broker(settings: Settings, timeout: float = 60.0) -> None:
    """Until the broker answers again (after a pause), so the next test finds it serving."""
    began = time.monotonic()
    while True:
        try:
            probe(settings)
            return
        except KafkaUnavailable:
            if time.monotonic() - began > timeout:
                raise


def _gone(pid: int) -> bool:
    """Exited (a zombie no one reaps counts: in a container pid 1 may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_processes_exit_when_the_supervisor_is_killed_and_the_broker_hangs(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A supervisor killed (-9) while the broker does not answer: its processes get SIGTERM from the
    kernel, their clean stop cannot reach the broker, and the stop deadline ends them. Before the
    deadline such processes outlived the test run by hours, reconnecting to the next broker."""
    broker = _broker_pid(kafka_settings)
    if broker is None:
        pytest.skip("the broker is not the local one of `clearance broker start`; it is not ours to pause")
    port = _free_port()
    log = tmp_path / "supervisor.log"
    env = _env(
        kafka_settings, CLEARANCE_WEB_PORT=str(port), CLEARANCE_LOG_LEVEL="INFO", CLEARANCE_STOP_TIMEOUT_SECONDS="3"
    )
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [*CLI, "worker", "--processes", "2"], env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
    supervisor = Worker(proc, port, log)
    children: list[int] = []
    try:
        wait_ready(supervisor, timeout=60)
        children = [int(p) for p in re.findall(r"p\d: pid (\d+), web port", log.read_text())]
        assert len(children) == 2, log.read_text()[-2000:]
        os.kill(broker, signal.SIGSTOP)
        try:
            supervisor.stop(signal.SIGKILL, timeout=10)
            waited = time.monotonic()
            while not all(_gone(pid) for pid in children) and time.monotonic() - waited < 45:
                time.sleep(0.2)
        finally:
            os.kill(broker, signal.SIGCONT)
        alive = [pid for pid in children if not _gone(pid)]
        assert not alive, f"processes {alive} outlived their killed supervisor:\n{log.read_text()[-3000:]}"
        text = log.read_text()
        assert text.count("the clean stop did not finish in 3 s") + text.count("Closing event loop") >= 2, text[-3000:]
    finally:
        supervisor.stop(signal.SIGKILL, timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_broker(kafka_settings)
