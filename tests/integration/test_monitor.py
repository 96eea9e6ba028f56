"""`clearance monitor` on the real broker, seen in a real browser (headless Chromium over DevTools).

A worker decides a small peak-hour trace replayed into this test's topics; the monitor
reads the result topics and the worker group. The page must show the totals computed here
from the declarations actually on the topics, the top reasons and the worker group; a
repeated declaration must change no figure, and a garbage record on the flagged topic is
counted as unreadable while the page keeps updating. The static report of `clearance run
--report` is checked in the same browser. Screenshots go to CLEARANCE_TEST_ARTIFACTS (default
out/test-artifacts/), as artifacts: they are not compared pixel by pixel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from clearance.kafka import producer_config
from clearance.settings import Settings
from tests.integration.browser import Browser, find_chromium
from tests.integration.test_worker import (
    CLI,
    ROOT,
    Worker,
    _env,
    _free_port,
    consume,
    flush,
    generate,
    input_messages,
    produce_trace,
    run_embedded,
    start_worker,
    total_records,
    trace_max_ms,
    wait_consumed,
)

pytestmark = pytest.mark.integration

ORDERS = 300
ARTIFACTS = Path(os.environ.get("CLEARANCE_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
TILES = {"released": "RELEASED", "inspection": "INSPECTION", "review": "REVIEW", "rejected": "REJECTED"}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found (apt-get install chromium; scripts/test.sh does it as root)")
    opened = Browser(binary, tmp_path / "chromium")
    yield opened
    opened.close()


@pytest.fixture
def monitor(kafka_settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = _free_port()
    log = tmp_path / "monitor.log"
    env = _env(kafka_settings, CLEARANCE_MONITOR_PORT=str(port), CLEARANCE_LOG_LEVEL="INFO")
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [*CLI, "monitor", "--since", "start"], env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
    yield proc, port, log
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the monitor did not stop within 15 s of SIGTERM:\n{log.read_text()[-3000:]}")


def expected_figures(got: dict[str, list[Any]]) -> dict[str, Any]:
    """The floor's totals computed from the records on the topics (once per declarationId)."""
    unique = {d["declarationId"]: d for name in ("matched", "flagged") for d in got[name]}
    statuses = Counter(d["status"] for d in unique.values())
    cleared = [d for d in unique.values() if d["status"] in ("RELEASED", "INSPECTION")]
    reasons = Counter(r for d in unique.values() for r in d["reasons"])
    timed = [d for d in unique.values() if d.get("receivedAt")]
    return {
        "statuses": statuses,
        "total": len(unique),
        "value": sum(Decimal(d["dutiableValue"]) for d in cleared),
        "tax": sum(Decimal(d["tax"]) for d in cleared),
        "reasons": reasons,
        "dead": len({(d["sourceTopic"], d["sourcePartition"], d["sourceOffset"]) for d in got["deadletter"]}),
        "timed": len(timed),
        "platforms": len({d["ebpCode"] for d in unique.values()}),
    }


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def tiles_show(browser: Browser, want: dict[str, Any]) -> bool:
    shown = {name: browser.figure(name) for name in (*TILES, "total", "value-cleared", "tax-assessed")}
    expected = {name: f"{want['statuses'][status]:,}" for name, status in TILES.items()}
    expected |= {
        "total": f"{want['total']:,}",
        "value-cleared": money(want["value"]),
        "tax-assessed": money(want["tax"]),
    }
    return shown == expected


def test_the_floor_in_a_browser(
    kafka_settings: Settings,
    tmp_path: Path,
    browser: Browser,
    monitor: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    started = time.monotonic()
    settings = kafka_settings
    proc, port, log = monitor
    workers: list[Worker] = []
    try:
        trace = generate(tmp_path / "trace", orders=ORDERS, seed=15)
        expected = run_embedded(settings, trace, tmp_path / "embedded")
        workers.append(start_worker(settings, tmp_path, "w1"))
        produce_trace(settings, trace, order_rate=300)
        wait_consumed(workers, input_messages(trace), timeout=120)
        flush(settings, trace_max_ms(expected))
        got = consume(settings, total_records(expected), quiet_s=4)
        want = expected_figures(got)
        assert want["total"] >= ORDERS and want["dead"] > 0 and want["reasons"], want

        browser.goto(f"http://127.0.0.1:{port}/")
        if not browser.wait_for("document.body.dataset.updates > 0", timeout=20):
            pytest.fail(f"the page never rendered a summary:\n{log.read_text()[-3000:]}")
        if not _wait(lambda: tiles_show(browser, want), 60):
            shown = {n: browser.figure(n) for n in (*TILES, "total", "value-cleared", "tax-assessed")}
            browser.screenshot(ARTIFACTS / "monitor-failed.png")
            pytest.fail(f"tiles {shown} never showed {want}")
        print(f"\nmonitor: tiles right {time.monotonic() - started:.1f} s into the test")

        # top reasons, in order, and dead letters
        rows = browser.eval(
            "[...document.querySelectorAll('#table-reasons tbody tr')].map(r => r.cells[0].textContent)"
        )
        counts = browser.eval(
            "[...document.querySelectorAll('#table-reasons tbody tr')].map(r => r.cells[1].textContent)"
        )
        top = want["reasons"].most_common()
        assert [int(c.replace(",", "")) for c in counts] == [n for _, n in top[: len(counts)]]
        assert set(rows) <= set(want["reasons"]) and rows[0] in {c for c, n in top if n == top[0][1]}
        assert browser.figure("dead-letters") == f"({want['dead']:,})"
        assert browser.eval("document.querySelectorAll('#table-platforms tbody tr').length") == min(
            want["platforms"], 12
        )
        # receipt-to-decision: measured exactly on the declarations that carry receivedAt
        measured = browser.figure("measured")
        assert (f"of {want['timed']:,} with receivedAt" in measured) if want["timed"] else ("no receivedAt" in measured)

        # the workers: one member, every input partition listed, lag back to 0 once committed
        assert _wait(lambda: browser.figure("members") == "1" and browser.figure("total-lag") == "0", 30), (
            browser.figure("members"), browser.figure("total-lag"), browser.figure("group-error"),
        )  # fmt: skip
        bars = browser.eval(
            "echarts.getInstanceByDom(document.getElementById('chart-lag')).getOption().series"
            ".reduce((n, s) => n + s.data.length, 0)"
        )
        assert bars == 3 * settings.partitions  # every input partition of the worker group
        assert browser.eval("document.getElementById('lag-warning').hidden") is True

        # updates at least once a second
        first = int(browser.eval("document.body.dataset.updates"))
        time.sleep(4)
        rate = (int(browser.eval("document.body.dataset.updates")) - first) / 4
        print(f"monitor: page updates {rate:.1f}/s")
        assert rate >= 1.0

        # a repeat of a declaration (another decidedAt) and a garbage record on the flagged topic
        repeat = dict(got["matched"][0])
        repeat["decidedAt"] = "2030-01-01T00:00:00.000Z"
        producer = Producer(producer_config(settings))
        producer.produce(settings.topic_matched, orjson.dumps(repeat), key=repeat["orderNo"].encode())
        producer.produce(
            settings.topic_flagged, b'{"declarationId": "x", "status": "<script>alert(1)</script>"}', key=b"G"
        )
        producer.produce(settings.topic_flagged, b"\xff garbage", key=b"G")
        assert producer.flush(30) == 0
        assert _wait(lambda: browser.figure("unreadable") == "2" and browser.figure("repeats") == "1", 30), (
            browser.figure("unreadable"), browser.figure("repeats"),
        )  # fmt: skip
        still = int(browser.eval("document.body.dataset.updates"))
        assert tiles_show(browser, want), "a repeat or a garbage record changed a figure"
        assert browser.eval("document.querySelectorAll('script').length") == 2  # nothing injected
        time.sleep(1.5)
        assert int(browser.eval("document.body.dataset.updates")) > still, "the page stopped updating"
        browser.screenshot(ARTIFACTS / "monitor.png")

        # /api/summary and /metrics carry the same numbers
        summary = orjson.loads(urllib_get(f"http://127.0.0.1:{port}/api/summary"))
        assert summary["decided"]["total"] == want["total"] and summary["unreadable"] == 2
        metrics = urllib_get(f"http://127.0.0.1:{port}/metrics").decode()
        line = f'clearance_monitor_declarations_total{{status="RELEASED"}} {float(want["statuses"]["RELEASED"])}'
        assert line in metrics, metrics[:2000]
        assert "clearance_group_lag{" in metrics and "clearance_monitor_receipt_to_decision_seconds_bucket" in metrics
    finally:
        for w in workers:
            w.stop(signal.SIGKILL, timeout=10)
    assert proc.poll() is None, log.read_text()[-3000:]

    # the static report of the same trace, in the same browser
    report = tmp_path / "report.html"
    run = [
        *CLI,
        "run",
        "--input",
        str(trace),
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        "--memory",
        "--report",
        str(report),
    ]
    subprocess.run(run, cwd=ROOT, env=_env(settings), check=True, capture_output=True)
    browser.goto(report.as_uri())
    assert browser.wait_for("document.body.dataset.updates == 1", timeout=20)
    embedded = Counter(d["status"] for name in ("matched", "flagged") for d in expected[name])
    for name, status in TILES.items():
        assert browser.figure(name) == f"{embedded[status]:,}", name
    assert browser.figure("dead-letters") == f"({len(expected['deadletter']):,})"
    assert browser.figure("value-cleared") == money(want["value"])  # the same decisions as on Kafka
    assert browser.eval("document.body.dataset.mode") == "report"
    browser.screenshot(ARTIFACTS / "monitor-report.png")
    print(f"monitor: test took {time.monotonic() - started:.1f} s")


def test_a_live_screen_does_not_hold_up_the_monitors_stop(
    monitor: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    """SIGTERM with a live page's event stream open: the stream ends and the monitor exits at once
    (until 4 December it took 122 s: aiohttp waits 60 s by default for open requests)."""
    import urllib.request

    proc, port, log = monitor
    assert _wait(lambda: proc.poll() is not None or _listening(port), 30), log.read_text()[-3000:]
    assert proc.poll() is None, log.read_text()[-3000:]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=10) as stream:  # noqa: S310
        assert stream.readline().startswith(b"data: {"), "the stream sends the summary first"
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        tail = b""
        while line := stream.readline():  # to the end of the stream: the monitor ends it
            tail += line
            if time.monotonic() - stopped > 10:
                pytest.fail(f"the event stream still open 10 s after SIGTERM:\n{log.read_text()[-3000:]}")
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no stop within 10 s of SIGTERM with a live page open:\n{log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]
    events = [chunk for chunk in tail.strip().split(b"\n\n") if chunk]
    assert all(chunk.startswith(b"data: {") for chunk in events), tail[-300:]  # whole events, then the end
    print(f"monitor: stopped {time.monotonic() - stopped:.2f} s after SIGTERM with a live page open")


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def _listening(port: int) -> bool:
    """The monitor answers /healthz."""
    try:
        urllib_get(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return False
    return True


def urllib_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the monitor on localhost
        body: bytes = answer.read()
        return body
