"""The annual quota counted in (eventTime, orderNo) order on the real broker (docs/CONTRACT.md,
"Annual quota"; issue 14), checked against `clearance run` on a crafted trace whose only
verdicts are quota verdicts, and whose verdicts change if any buyer's declarations are
counted in another order (tests/fixtures/quota_trace.py).

- two workers, a full-speed replay, kill -9 of one worker at about half the input and a
  restart on its data dir: every declaration equals the embedded run's;
- one worker and a slow replay (400 messages/s), where the bug was first seen: the
  verdicts went the wrong way round when a buyer's orders sat on different partitions.

On a difference the test prints, per differing order, its buyer, eventTime, completing
document, join partition and both verdicts, with the buyer's other orders.

CLEARANCE_TEST_QUOTA_BUYERS sets the number of buyers (default 400, about 2,500 orders).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clearance.settings import Settings
from ops.replay import Pacing, replay
from pipeline.partitioner import partition_of
from tests.fixtures import quota_trace as Q
from tests.integration.test_worker import (
    QUOTA,
    Worker,
    compare,
    consume,
    flush,
    input_lag,
    input_messages,
    run_embedded,
    spawn_worker,
    start_worker,
    total_records,
    trace_max_ms,
    wait_consumed,
    wait_ready,
)

pytestmark = pytest.mark.integration

BUYERS = int(os.environ.get("CLEARANCE_TEST_QUOTA_BUYERS", "400"))
MIN_QUOTA_REJECTIONS = 40


@pytest.fixture
def started() -> Iterator[list[Worker]]:
    """Every worker a test starts; killed at the end whatever happened."""
    procs: list[Worker] = []
    yield procs
    for w in procs:
        w.stop(signal.SIGKILL, timeout=10)


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[list[Q.QuotaOrder], Path]:
    orders = Q.build_orders(BUYERS)
    return orders, Q.write_trace(tmp_path / "trace", orders)


def _expected(settings: Settings, orders: list[Q.QuotaOrder], trace: Path, out: Path) -> dict[str, list[Any]]:
    """`clearance run` on the crafted trace: quota verdicts only, exactly the contract's."""
    expected = run_embedded(settings, trace, out)
    declarations = expected["matched"] + expected["flagged"]
    assert not expected["deadletter"], expected["deadletter"][:3]
    assert len(declarations) == len(orders)
    other = [d for d in expected["flagged"] if d["reasons"] != [QUOTA]]
    assert not other, f"reasons other than the quota: {other[:3]}"
    rejected = {d["orderNo"] for d in expected["flagged"]}
    assert len(rejected) >= MIN_QUOTA_REJECTIONS, f"only {len(rejected)} quota rejections"
    contract = Q.contract_verdicts(orders)
    assert rejected == contract, (
        f"clearance run is not counting in (eventTime, orderNo) order: {sorted(rejected ^ contract)[:5]}"
    )
    assert Q.tie_sensitive(orders) > 0, "no verdict depends on the orderNo tie-break"
    return expected


def _explain(
    settings: Settings, orders: list[Q.QuotaOrder], expected: dict[str, list[Any]], got: dict[str, list[Any]]
) -> str:
    """Which orders got which verdict, with their buyer's orders, eventTimes and partitions."""
    want = {d["orderNo"]: QUOTA in d["reasons"] for n in ("matched", "flagged") for d in expected[n]}
    have: dict[str, set[bool]] = {}
    for name in ("matched", "flagged"):
        for d in got[name]:
            have.setdefault(d["orderNo"], set()).add(QUOTA in d["reasons"])
    by_no = {o.order_no: o for o in orders}
    differ = sorted(
        (n for n in want if have.get(n) != {want[n]}), key=lambda n: (by_no[n].buyer_index, Q.contract_key(by_no[n]))
    )
    lines = [f"{len(differ)} orders differ (expected / got; * rejected, partition p of the join):"]
    for buyer in sorted({by_no[n].buyer_index for n in differ})[:5]:
        lines.append(f"buyer {buyer}:")
        for o in sorted((o for o in orders if o.buyer_index == buyer), key=Q.contract_key):
            mark = "<-" if o.order_no in differ else "  "
            got_v = ",".join("*" if v else "ok" for v in sorted(have.get(o.order_no, set()))) or "missing"
            lines.append(
                f"  {mark} {o.order_no} eventTime {o.event_time:%m-%d %H:%M:%S} by {o.completing:7} "
                f"p{partition_of(o.order_no.encode(), settings.partitions)} "
                f"{o.dutiable_fen / 100:9.2f} {'*' if want[o.order_no] else 'ok'} / {got_v}"
            )
    return "\n".join(lines)


def _check(
    settings: Settings,
    orders: list[Q.QuotaOrder],
    expected: dict[str, list[Any]],
    got: dict[str, list[Any]],
    *,
    repeats_allowed: bool,
) -> dict[str, int]:
    try:
        return dict(compare(expected, got, repeats_allowed=repeats_allowed))
    except AssertionError:
        print("\n" + _explain(settings, orders, expected, got))
        raise


def _wait_lag_zero(live: list[Worker], settings: Settings, timeout: float) -> None:
    """Input lag 0, reported for every input partition by some live worker."""
    want = {(t, str(p)) for t in settings.input_topics for p in range(settings.partitions)}
    deadline = time.monotonic() + timeout
    while True:
        reported = {
            (t, k.split('partition="')[1].split('"')[0])
            for w in live
            for k in w.metrics()
            if k.startswith("clearance_consumer_lag{")
            for t in settings.input_topics
            if f'topic="{t}"' in k
        }
        lag = input_lag(live, settings)
        if lag == 0 and reported >= want:
            return
        assert time.monotonic() < deadline, f"input lag {lag}, {len(want - reported)} partitions unreported"
        time.sleep(0.5)


def test_quota_order_two_workers_kill_9(
    kafka_settings: Settings, tmp_path: Path, started: list[Worker], crafted: tuple[list[Q.QuotaOrder], Path]
) -> None:
    """Two workers, full-speed replay, kill -9 of one at half the input, restart: the embedded verdicts."""
    settings = kafka_settings
    orders, trace = crafted
    begin = time.monotonic()
    expected = _expected(settings, orders, trace, tmp_path / "embedded")
    total = input_messages(trace)
    dirs = {name: str(tmp_path / name) for name in ("d1", "d2")}
    pair = [spawn_worker(settings, tmp_path, f"w{i}", CLEARANCE_DATA_DIR=d) for i, d in enumerate(dirs.values(), 1)]
    started.extend(pair)
    for w in pair:
        wait_ready(w)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            assert replay(trace, settings).errors == 0
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    producing = threading.Thread(target=produce)
    producing.start()
    victim, survivor = pair
    deadline = time.monotonic() + 120
    while (seen := sum(w.documents_in() for w in pair)) < total / 2:
        assert all(w.proc.poll() is None for w in pair), victim.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"only {seen} of {total} consumed in 120 s"
        time.sleep(0.1)
    before = victim.documents_in(), survivor.documents_in()
    victim.stop(signal.SIGKILL)
    producing.join()
    assert not errors, errors
    restarted = start_worker(settings, tmp_path, "w1-restarted", CLEARANCE_DATA_DIR=dirs["d1"])
    started.append(restarted)
    live = [survivor, restarted]
    wait_consumed(live, total - before[0], timeout=120)
    _wait_lag_zero(live, settings, timeout=120)
    flush(settings, trace_max_ms(expected))
    got = consume(settings, total_records(expected))
    stats = _check(settings, orders, expected, got, repeats_allowed=True)
    print(
        f"\nquota order, two workers, kill -9 at {sum(before)} of {total} messages (victim {before[0]}, "
        f"survivor {before[1]}): {len(orders)} orders, {stats['quota_rejections']} quota rejections, "
        f"{stats.get('repeats', 0)} repeats; {time.monotonic() - begin:.0f} s"
    )


def test_quota_order_slow_replay_one_worker(
    kafka_settings: Settings, tmp_path: Path, started: list[Worker], crafted: tuple[list[Q.QuotaOrder], Path]
) -> None:
    """One worker, the trace at 400 messages/s (where the verdicts first went the wrong way round)."""
    settings = kafka_settings
    orders, trace = crafted
    begin = time.monotonic()
    expected = _expected(settings, orders, trace, tmp_path / "embedded")
    total = input_messages(trace)
    worker = start_worker(settings, tmp_path, "w1")
    started.append(worker)
    summary = replay(trace, settings, Pacing("rate", 400))
    assert summary.errors == 0
    wait_consumed([worker], total, timeout=60)
    _wait_lag_zero([worker], settings, timeout=60)
    flush(settings, trace_max_ms(expected))
    got = consume(settings, total_records(expected))
    stats = _check(settings, orders, expected, got, repeats_allowed=False)
    print(
        f"\nquota order, one worker, {summary.rate:.0f} messages/s: {len(orders)} orders, "
        f"{stats['quota_rejections']} quota rejections, {stats.get('repeats', 0)} repeats; "
        f"{time.monotonic() - begin:.0f} s"
    )
