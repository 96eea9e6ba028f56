"""`clearance worker --processes 2` on the real broker: one supervisor, two Faust processes, one group."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from clearance.settings import Settings
from tests.integration.test_worker import (
    CLI,
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


# Open: with a backlog waiting when both processes start, 10 of 600 orders were decided unlike
# `clearance run` (one run at commit bc556ef; the bench's case d showed the same at 20,000 orders).
# Two `clearance worker` spawns started together meet the same: the first member takes every
# partition, starts on the backlog, and hands half over at the second's rebalance. Not strict:
# it passes at times; the worker's hand-over is not this module's to fix.
BACKLOG_OPEN = pytest.mark.xfail(strict=False, reason="orders decided differently after a hand-over mid-backlog")


@pytest.mark.parametrize(
    "preload",
    [False, pytest.param(True, marks=BACKLOG_OPEN)],
    ids=["replay-after-start", "backlog-before-start"],
)
def test_two_processes_share_the_partitions_and_stop_together(
    kafka_settings: Settings, tmp_path: Path, preload: bool
) -> None:
    """Both ways the benchmark and a deploy meet it: input replayed once the processes are ready,
    and a backlog waiting when both start together (case d of `clearance bench`)."""
    trace = generate(tmp_path / "trace", orders=600 if preload else 300, seed=12)
    expected = run_embedded(kafka_settings, trace, tmp_path / "embedded")
    if preload:
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
        flush(kafka_settings, trace_max_ms(expected))
        got = consume(kafka_settings, total_records(expected), quiet_s=3.0, timeout=60.0)
        stats = compare(expected, got)
        documents = _per_process(supervisor, "clearance_documents_in")
        print(f"\nready after {ready:.1f} s; documents per process {documents}; differential {dict(stats)}")
        assert set(documents) == {"p0", "p1"} and all(v > 0 for v in documents.values()), documents
        assert supervisor.get("/healthz")[0] == 200
        code = supervisor.stop(signal.SIGTERM, timeout=60)
        assert code == 0, log.read_text()[-3000:]
    finally:
        supervisor.stop(signal.SIGKILL, timeout=10)
    text = log.read_text()
    assert "EXITED" not in text and text.count("stopped, exit code 0") == 2, text[-3000:]
