"""ops.replay without a broker: key extraction, the appTime merge, pacing, the times file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from clearance.settings import Settings
from clearance.traces import TraceError, count_lines, trace_files
from ops.replay import (
    Pacing,
    TraceLine,
    key_and_time,
    merge,
    order_rate_pacing,
    read_file,
    read_times,
    replay,
    write_times,
)
from pipeline.timeconv import app_time_ms
from tests.ops.test_marks import FakeProducer


def _doc(order_no: str, app_time: str) -> bytes:
    return orjson.dumps({"orderNo": order_no, "appTime": app_time, "guid": f"{order_no}-{app_time}"})


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize(
    ("raw", "key", "time"),
    [
        (_doc("TM1", "20261111000005"), b"TM1", app_time_ms("20261111000005")),
        (b'{"orderNo": "\xe8\xae\xa2\xe5\x8d\x95", "appTime": "x"}', "订单".encode(), None),
        (b"not json", None, None),
        (b"[1, 2]", None, None),
        (b'{"orderNo": 17, "appTime": "20261111000005"}', None, app_time_ms("20261111000005")),
        (b'{"appTime": "20261399000005"}', None, None),
        (b"", None, None),
    ],
)
def test_key_and_time(raw: bytes, key: bytes | None, time: int | None) -> None:
    assert key_and_time(raw) == (key, time)


def test_merge_orders_by_app_time_then_kind_then_line(tmp_path: Path) -> None:
    _write(tmp_path / "orders.jsonl", [_doc("A", "20261111000010"), _doc("B", "20261111000020")])
    _write(tmp_path / "payments.jsonl", [_doc("A", "20261111000010"), _doc("B", "20261111000015")])
    _write(tmp_path / "waybills.jsonl", [_doc("A", "20261111000005"), _doc("B", "20261111000020")])
    present = trace_files(tmp_path)
    merged = [(line.kind, line.key) for line in merge(read_file(p, k, r) for r, (k, p) in enumerate(present))]
    assert merged == [
        ("waybill", b"A"),
        ("order", b"A"),
        ("payment", b"A"),
        ("payment", b"B"),
        ("order", b"B"),
        ("waybill", b"B"),
    ]


def test_same_time_same_file_keeps_line_order(tmp_path: Path) -> None:
    _write(tmp_path / "orders.jsonl", [_doc(f"O{i}", "20261111000010") for i in range(5)])
    present = trace_files(tmp_path)
    merged = [line.key for line in merge(read_file(p, k, r) for r, (k, p) in enumerate(present))]
    assert merged == [f"O{i}".encode() for i in range(5)]


def test_invalid_line_keeps_its_place_in_its_file(tmp_path: Path) -> None:
    _write(tmp_path / "orders.jsonl", [_doc("A", "20261111000010"), b"{broken", _doc("C", "20261111000030")])
    _write(tmp_path / "payments.jsonl", [_doc("B", "20261111000020")])
    present = trace_files(tmp_path)
    merged = [line.raw for line in merge(read_file(p, k, r) for r, (k, p) in enumerate(present))]
    # the broken line sorts at its predecessor's time (00:10), before the 00:20 payment
    assert merged == [_doc("A", "20261111000010"), b"{broken", _doc("B", "20261111000020"), _doc("C", "20261111000030")]


def test_every_line_once_including_blank_and_unterminated(tmp_path: Path) -> None:
    (tmp_path / "orders.jsonl").write_bytes(_doc("A", "20261111000010") + b"\n\n" + _doc("B", "20261111000011"))
    assert count_lines(tmp_path / "orders.jsonl") == 3
    lines = list(read_file(tmp_path / "orders.jsonl", "order", 0))
    assert [line.raw for line in lines] == [_doc("A", "20261111000010"), b"", _doc("B", "20261111000011")]
    assert [line.index for line in lines] == [0, 1, 2]


def test_missing_files_are_fine_but_an_empty_dir_is_not(tmp_path: Path) -> None:
    with pytest.raises(TraceError):
        trace_files(tmp_path)
    with pytest.raises(TraceError):
        trace_files(tmp_path / "absent")
    _write(tmp_path / "waybills.jsonl", [_doc("A", "20261111000010")])
    assert [kind for kind, _ in trace_files(tmp_path)] == ["waybill"]


@pytest.mark.parametrize(
    ("pacing", "i", "trace_ms", "due"),
    [
        (Pacing(), 1000, 5000, None),
        (Pacing("rate", 500), 0, 0, 0.0),
        (Pacing("rate", 500), 1000, 99, 2.0),
        (Pacing("speedup", 60), 7, 60_000 + 1000, 1.0),
        (Pacing("speedup", 1), 7, 1000, 0.0),
    ],
)
def test_pacing_due(pacing: Pacing, i: int, trace_ms: int, due: float | None) -> None:
    assert pacing.due(i, trace_ms, first_ms=1000) == due


def test_order_rate_is_a_message_rate_scaled_by_the_trace() -> None:
    assert order_rate_pacing(3000, messages=30_000, orders=10_000) == Pacing("rate", 9000)
    assert order_rate_pacing(10, messages=5, orders=0).value == 50  # no orders: no division by zero


def test_times_round_trip(tmp_path: Path) -> None:
    times = {b"TM1": 1_700_000_000_123, "订单".encode(): 5}
    write_times(tmp_path / "t" / "times.csv", times)
    assert read_times(tmp_path / "t" / "times.csv") == {"TM1": 1_700_000_000_123, "订单": 5}


def test_trace_line_is_plain_data() -> None:
    line = TraceLine(None, 0, 0, "order", b"x", None)
    assert line.key is None and line.time_ms is None


def test_the_replay_follows_each_message_with_its_own_app_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The marks are kept from each message's own appTime, not the trace's running maximum: the
    payment at 00:00:01 comes after one at 00:00:35 (a trace out of order) and is recorded at 1 s."""
    _write(tmp_path / "orders.jsonl", [_doc("A", "20261111000010"), _doc("B", "20261111000030")])
    _write(tmp_path / "payments.jsonl", [_doc("X", "20261111000035"), _doc("C", "20261111000001"), b"{bad"])
    followed: list[int] = []

    class Recorder:
        def __init__(self, *args: Any) -> None:
            pass

        def due(self, next_ms: int) -> int:
            return 0

        def produced(self, time_ms: int) -> Any:
            followed.append(time_ms)
            return lambda err, msg: None

        def ended(self, topic: str) -> int:
            return 0

    monkeypatch.setattr("ops.replay.Producer", lambda config: FakeProducer())
    monkeypatch.setattr("ops.producer.partition_count", lambda producer, topic, settings: 2)
    monkeypatch.setattr("ops.replay.Watermarks", Recorder)
    summary = replay(tmp_path, Settings(), watermarks_s=0.2)
    assert summary.messages == 5
    start = app_time_ms("20261111000000")
    assert [(ms - start) // 1000 for ms in followed] == [10, 30, 35, 1, 35], (
        "the bad line: the latest appTime before it"
    )
