"""The floor's figures on records built here: repeats, the China-time day, unreadable records, percentiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from monitor.tally import Latency, Tally, day_start, parse_iso_ms
from pipeline.timeconv import iso_utc_ms

# 2026-11-11 00:00:00 +08:00 is 2026-11-10 16:00:00 UTC
MIDNIGHT_MS = int(datetime(2026, 11, 10, 16, tzinfo=UTC).timestamp() * 1000)


def decl(n: int, status: str = "RELEASED", *, at: int = MIDNIGHT_MS + 3_600_000, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "declarationId": f"d{n}",
        "orderNo": f"T{n}",
        "ebpCode": "3301964J31",
        "logisticsCode": "3301980101",
        "status": status,
        "reasons": [] if status in ("RELEASED", "INSPECTION") else ["TAX_MISMATCH"],
        "dutiableValue": "100.50",
        "tax": "9.15",
        "eventTime": "2026-11-11T01:00:00+08:00",
        "decidedAt": iso_utc_ms(at),
    }
    body.update(extra)
    return orjson.dumps(body)


def dead(offset: int, reason: str = "weight: must be a number", at: int = MIDNIGHT_MS + 60_000) -> bytes:
    return orjson.dumps(
        {"sourceTopic": "clearance.waybills", "sourcePartition": 0, "sourceOffset": offset, "reason": reason,
         "deadLetteredAt": iso_utc_ms(at)}
    )  # fmt: skip


def test_a_repeated_declaration_changes_no_figure() -> None:
    tally = Tally(MIDNIGHT_MS, daily=True)
    for n, status in enumerate(["RELEASED", "INSPECTION", "REVIEW", "REJECTED"]):
        assert tally.add_declaration(decl(n, status)) == "counted"
    now = MIDNIGHT_MS + 3_600_000 + 5_000
    before = tally.summary(now)
    # a repeat may differ in decidedAt only (and still counts once)
    assert tally.add_declaration(decl(2, "REVIEW", at=MIDNIGHT_MS + 3_600_500)) == "repeat"
    after = tally.summary(now)
    assert after.pop("repeats") == 1 and before.pop("repeats") == 0
    assert after == before
    assert before["decided"] == {"RELEASED": 1, "INSPECTION": 1, "REVIEW": 1, "REJECTED": 1, "total": 4}
    assert before["valueCleared"] == "201.00" and before["taxAssessed"] == "18.30"  # released + X-ray only
    assert before["reasons"] == [("TAX_MISMATCH", 2)]
    assert before["platforms"] == [{"code": "3301964J31", "decided": 4, "cleared": 2, "flagged": 2, "value": "201.00"}]


def test_the_day_is_china_time_and_rolls_at_its_midnight() -> None:
    assert day_start(MIDNIGHT_MS + 1) == MIDNIGHT_MS
    assert day_start(MIDNIGHT_MS - 1) == MIDNIGHT_MS - 86_400_000
    tally = Tally(MIDNIGHT_MS, daily=True)
    assert tally.add_declaration(decl(1, at=MIDNIGHT_MS - 1)) == "outside"  # 23:59:59.999 the day before
    assert tally.add_declaration(decl(2, at=MIDNIGHT_MS)) == "counted"  # 00:00:00.000
    assert tally.add_declaration(decl(3, at=MIDNIGHT_MS + 86_400_000)) == "outside"  # tomorrow, not yet
    assert not tally.roll(MIDNIGHT_MS + 86_399_999)
    assert tally.decided == 1
    assert tally.roll(MIDNIGHT_MS + 86_400_000)
    assert tally.decided == 0 and tally.since_ms == MIDNIGHT_MS + 86_400_000
    assert tally.add_declaration(decl(3, at=MIDNIGHT_MS + 86_400_000)) == "counted"
    assert tally.summary(MIDNIGHT_MS + 86_400_000)["since"] == "2026-11-12T00:00:00+08:00"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        decl(1, "FREED"),
        decl(1, reasons="TAX_MISMATCH"),
        decl(1, dutiableValue="12,50"),
        decl(1, decidedAt="yesterday"),
        decl(1, decidedAt="2026-11-11T01:00:00"),  # no offset
        decl(1, ebpCode=42),
        decl(1, declarationId=""),
    ],
)
def test_a_record_that_is_no_declaration_is_unreadable(raw: bytes) -> None:
    tally = Tally()
    assert tally.add_declaration(raw) == "unreadable"
    assert tally.add_declaration(decl(2)) == "counted"  # and counting goes on
    summary = tally.summary(None)
    assert summary["unreadable"] == 1 and summary["decided"]["total"] == 1


def test_dead_letters_count_once_per_input_message_by_reason() -> None:
    tally = Tally(MIDNIGHT_MS, daily=True)
    assert [tally.add_dead_letter(dead(i)) for i in range(3)] == ["counted"] * 3
    assert tally.add_dead_letter(dead(1)) == "repeat"
    assert tally.add_dead_letter(dead(9, "orderNo: required")) == "counted"
    assert tally.add_dead_letter(dead(10, at=MIDNIGHT_MS - 5)) == "outside"
    assert tally.add_dead_letter(b'{"reason": 5}') == "unreadable"
    letters = tally.summary(MIDNIGHT_MS + 61_000)["deadLetters"]
    assert letters == {"total": 4, "byReason": [("weight: must be a number", 3), ("orderNo: required", 1)]}


def test_receipt_to_decision_percentiles_and_the_ten_minute_share() -> None:
    tally = Tally()
    for n in range(1, 101):  # 1 s .. 100 s, and one of 11 minutes
        at = MIDNIGHT_MS + 1_000_000
        assert tally.add_declaration(decl(n, at=at, receivedAt=iso_utc_ms(at - n * 1000))) == "counted"
    at = MIDNIGHT_MS + 2_000_000
    tally.add_declaration(decl(500, at=at, receivedAt=iso_utc_ms(at - 660_000)))
    tally.add_declaration(decl(501))  # no receivedAt: not measured
    receipt = tally.summary(None)["receipt"]
    assert receipt["measured"] == 101 and receipt["withinTenMinutes"] == 100
    assert receipt["share"] == pytest.approx(100 / 101)
    assert (receipt["p50"], receipt["p95"], receipt["p99"]) == (51.0, 96.0, 100.0)


def test_latency_buckets_keep_three_digits_and_never_report_low() -> None:
    lat = Latency()
    for ms in (999, 1234, 61_234, 654_321):
        lat.add(ms)
    assert sorted(lat.buckets) == [999, 1240, 61_300, 655_000]
    assert lat.percentile(0.5) == 1240 and lat.percentile(1.0) == 655_000
    assert lat.cumulative((1.0, 60.0, 600.0, 900.0)) == [1, 2, 3, 4]
    assert Latency().percentile(0.5) is None


def test_per_minute_is_stacked_by_status_and_throughput_is_the_last_ten_seconds() -> None:
    tally = Tally()
    base = MIDNIGHT_MS + 3_600_000
    tally.add_declaration(decl(1, at=base + 1_000))
    tally.add_declaration(decl(2, "REJECTED", at=base + 2_000))
    tally.add_declaration(decl(3, at=base + 61_000))
    minutes = tally.per_minute(base + 65_000)
    assert minutes["minutes"] == ["01:00", "01:01"]
    assert (minutes["RELEASED"], minutes["REJECTED"], minutes["REVIEW"]) == ([1, 1], [1, 0], [0, 0])
    assert tally.throughput(base + 65_000) == pytest.approx(0.1)
    assert tally.throughput(base + 500_000) == 0.0
    assert tally.throughput(None) == pytest.approx(3 / 60)


def test_iso_times_parse_with_offsets() -> None:
    assert parse_iso_ms("2026-11-10T16:00:00.000Z") == MIDNIGHT_MS
    assert parse_iso_ms("2026-11-11T00:00:00+08:00") == MIDNIGHT_MS


def test_throughput_now_dates_a_declaration_by_its_publication() -> None:
    tally = Tally()
    base = MIDNIGHT_MS + 3_600_000
    for n in range(20):  # decided a minute ago, held by the quota stage, published just now
        tally.add_declaration(decl(n, at=base - 60_000), published_ms=base - 500)
    assert tally.throughput(base) == pytest.approx(2.0)
    assert tally.per_minute(base)["RELEASED"][-2:] == [20, 0]  # the chart keeps the minute decided
