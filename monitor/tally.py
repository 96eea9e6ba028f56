"""The floor's figures: declarations and dead letters in, one summary out. No Kafka, no clock.

`Tally.add_declaration` and `Tally.add_dead_letter` take the raw bytes of a record (as
published on the result topics) and count it once: a declaration by its `declarationId`
(at-least-once delivery may publish it again), a dead letter by the input message it
stands for (source topic, partition, offset). A record that is not a declaration (or not
a dead letter) is counted as unreadable and otherwise ignored: it never raises.

What counts: declarations whose `decidedAt` is at or after `since_ms` (None: all). With
`daily` the window is one China-time day: `roll(now_ms)` starts the next day at midnight
(+08:00) and forgets the previous one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from pipeline.timeconv import CST

STATUSES = ("RELEASED", "INSPECTION", "REVIEW", "REJECTED")
CLEARED = frozenset({"RELEASED", "INSPECTION"})
TEN_MINUTES_MS = 600_000
DAY_MS = 86_400_000
MINUTE_MS = 60_000
NOW_WINDOW_S = 10  # "throughput now": declarations decided in the last 10 s
TOP = 12
_TEXT_MAX = 120  # longer codes and reasons from the data are cut


class Unreadable(ValueError):
    """A record that is not what its topic promises."""


@dataclass(frozen=True, slots=True)
class Decided:
    """What the floor needs of one declaration."""

    declaration_id: str
    status: str
    reasons: tuple[str, ...]
    dutiable_fen: int
    tax_fen: int
    ebp_code: str
    logistics_code: str
    event_ms: int
    decided_ms: int
    received_ms: int | None


def day_start(ms: int) -> int:
    """Midnight (China time) of the day of `ms`, in epoch ms."""
    t = datetime.fromtimestamp(ms / 1000, CST)
    return int(t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def parse_iso_ms(text: object) -> int:
    """Epoch ms of an ISO-8601 time with an offset or Z; Unreadable otherwise."""
    if not isinstance(text, str):
        raise Unreadable("time is not a string")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Unreadable(f"bad time {text[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise Unreadable("time without an offset")
    return int(parsed.timestamp() * 1000)


def _fen(value: object) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        raise Unreadable("money is not a string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise Unreadable("money is not a decimal") from exc
    if not amount.is_finite() or amount < 0:
        raise Unreadable("money out of range")
    return int(amount * 100)


def _code(value: object) -> str:
    if value is None:
        return "(none)"
    if not isinstance(value, str):
        raise Unreadable("code is not a string")
    return value[:_TEXT_MAX]


def parse_declaration(raw: bytes) -> Decided:
    """The fields the floor uses; Unreadable when `raw` is not a declaration."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Unreadable("not JSON") from exc
    if not isinstance(body, dict):
        raise Unreadable("not a JSON object")
    did, status, reasons = body.get("declarationId"), body.get("status"), body.get("reasons")
    if not isinstance(did, str) or not did:
        raise Unreadable("no declarationId")
    if status not in STATUSES:
        raise Unreadable("unknown status")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise Unreadable("reasons is not a list of codes")
    received = body.get("receivedAt")
    return Decided(
        declaration_id=did,
        status=status,
        reasons=tuple(r[:_TEXT_MAX] for r in reasons),
        dutiable_fen=_fen(body.get("dutiableValue")),
        tax_fen=_fen(body.get("tax")),
        ebp_code=_code(body.get("ebpCode")),
        logistics_code=_code(body.get("logisticsCode")),
        event_ms=parse_iso_ms(body.get("eventTime")),
        decided_ms=parse_iso_ms(body.get("decidedAt")),
        received_ms=None if received is None else parse_iso_ms(received),
    )


def _bucket(ms: int) -> int:
    """Receipt-to-decision ms kept to 3 significant digits (exact below 1 s): percentiles within 0.1%."""
    if ms < 1000:
        return max(ms, 0)
    scale = int(10 ** (len(str(ms)) - 3))
    return (ms + scale - 1) // scale * scale  # rounded up: a percentile is never reported too low


@dataclass
class Latency:
    """Receipt-to-decision times (ms), bucketed, with the exact share within ten minutes."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    within: int = 0

    def add(self, ms: int) -> None:
        self.buckets[_bucket(ms)] += 1
        self.count += 1
        self.within += ms <= TEN_MINUTES_MS

    def percentile(self, q: float) -> int | None:
        """The smallest bucket with at least q of the times at or below it (nearest rank)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count - 1e-9))  # nearest rank; 1e-9: 0.95 * 100 is 95.00000000000001
        seen = 0
        for value in sorted(self.buckets):
            seen += self.buckets[value]
            if seen >= rank:
                return value
        return max(self.buckets.keys())

    def cumulative(self, bounds_s: tuple[float, ...]) -> list[int]:
        """How many times are at or below each bound (seconds): a Prometheus histogram's buckets."""
        out = []
        for bound in bounds_s:
            limit = bound * 1000
            out.append(sum(n for ms, n in self.buckets.items() if ms <= limit))
        return out

    def sum_seconds(self) -> float:
        return sum(ms * n for ms, n in self.buckets.items()) / 1000


@dataclass
class Breakdown:
    """Declarations and value cleared of one platform or logistics company."""

    statuses: Counter[str] = field(default_factory=Counter)
    cleared_fen: int = 0


Clock = Literal["decided", "event"]


class Tally:
    """The running figures of one window (a day, or everything since a time)."""

    def __init__(self, since_ms: int | None = None, *, daily: bool = False, clock: Clock = "decided") -> None:
        self.daily = daily
        self.clock = clock
        self.since_ms = since_ms
        self.until_ms = None if since_ms is None or not daily else since_ms + DAY_MS
        self._reset()

    def _reset(self) -> None:
        self.seen: set[str] = set()
        self.dead_seen: set[tuple[Any, ...]] = set()
        self.statuses: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.dead_reasons: Counter[str] = Counter()
        self.platforms: dict[str, Breakdown] = {}
        self.carriers: dict[str, Breakdown] = {}
        self.minutes: dict[int, Counter[str]] = {}
        self.seconds: Counter[int] = Counter()  # second published (else decidedAt) -> declarations
        self.latency = Latency()
        self.cleared_fen = 0
        self.tax_fen = 0
        self.repeats = 0
        self.unreadable = 0
        self.earlier = 0  # decided before the window: not counted
        self.first_decided_ms: int | None = None
        self.last_decided_ms: int | None = None

    def roll(self, now_ms: int) -> bool:
        """Daily: at China-time midnight start the new day (True when it did)."""
        if self.until_ms is None or now_ms < self.until_ms:
            return False
        self.since_ms = day_start(now_ms)
        self.until_ms = self.since_ms + DAY_MS
        self._reset()
        return True

    def add_declaration(self, raw: bytes, published_ms: int | None = None) -> str:
        """Count one published declaration: "counted", "repeat", "outside" or "unreadable".

        `published_ms` (the record's Kafka timestamp) dates it for "throughput now": a
        decision may be published seconds after its decidedAt (the quota stage waits).
        """
        try:
            d = parse_declaration(raw)
        except Unreadable:
            self.unreadable += 1
            return "unreadable"
        if (self.since_ms is not None and d.decided_ms < self.since_ms) or (
            self.until_ms is not None and d.decided_ms >= self.until_ms
        ):
            self.earlier += 1
            return "outside"
        if d.declaration_id in self.seen:
            self.repeats += 1
            return "repeat"
        self.seen.add(d.declaration_id)
        self._count(d)
        self.seconds[(d.decided_ms if published_ms is None else published_ms) // 1000] += 1
        return "counted"

    def _count(self, d: Decided) -> None:
        self.statuses[d.status] += 1
        self.reasons.update(d.reasons)
        cleared = d.dutiable_fen if d.status in CLEARED else 0
        if d.status in CLEARED:
            self.cleared_fen += d.dutiable_fen
            self.tax_fen += d.tax_fen
        for table, code in ((self.platforms, d.ebp_code), (self.carriers, d.logistics_code)):
            entry = table.setdefault(code, Breakdown())
            entry.statuses[d.status] += 1
            entry.cleared_fen += cleared
        at = d.decided_ms if self.clock == "decided" else d.event_ms
        self.minutes.setdefault(at - at % MINUTE_MS, Counter())[d.status] += 1
        if d.received_ms is not None:
            self.latency.add(d.decided_ms - d.received_ms)
        first, last = self.first_decided_ms, self.last_decided_ms
        self.first_decided_ms = d.decided_ms if first is None else min(first, d.decided_ms)
        self.last_decided_ms = d.decided_ms if last is None else max(last, d.decided_ms)

    def add_dead_letter(self, raw: bytes) -> str:
        """Count one dead-letter record: "counted", "repeat", "outside" or "unreadable"."""
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("reason"), str):
                raise Unreadable("not a dead letter")
            at = parse_iso_ms(body.get("deadLetteredAt"))
            key = (body.get("sourceTopic"), body.get("sourcePartition"), body.get("sourceOffset"))
            if not isinstance(key[0], str) or not isinstance(key[2], int):
                raise Unreadable("no source")
        except (orjson.JSONDecodeError, Unreadable):
            self.unreadable += 1
            return "unreadable"
        if (self.since_ms is not None and at < self.since_ms) or (self.until_ms is not None and at >= self.until_ms):
            return "outside"
        if key in self.dead_seen:
            return "repeat"
        self.dead_seen.add(key)
        self.dead_reasons[body["reason"][:_TEXT_MAX]] += 1
        return "counted"

    @property
    def decided(self) -> int:
        return sum(self.statuses.values())

    def throughput(self, now_ms: int | None) -> float:
        """Declarations per second: published in the last NOW_WINDOW_S before `now_ms`, or the run's average."""
        if now_ms is None:
            first, last = self.first_decided_ms, self.last_decided_ms
            if first is None or last is None:
                return 0.0
            return self.decided / max((last - first) / 1000, 1.0)
        now_s = now_ms // 1000
        for old in [s for s in self.seconds if s < now_s - 60]:
            del self.seconds[old]
        return sum(n for s, n in self.seconds.items() if now_s - NOW_WINDOW_S < s <= now_s) / NOW_WINDOW_S

    def per_minute(self, now_ms: int | None, span: int = 60) -> dict[str, Any]:
        """Declarations per minute by status: the last `span` minutes to `now_ms`, or every minute seen."""
        if now_ms is None:
            if not self.minutes:
                return {"minutes": [], **{s: [] for s in STATUSES}}
            start, end = min(self.minutes), max(self.minutes)
        else:
            end = now_ms - now_ms % MINUTE_MS
            start = end - (span - 1) * MINUTE_MS
            if self.minutes:
                start = max(start, min(min(self.minutes), end))
            for old in [m for m in self.minutes if m < end - 24 * 60 * MINUTE_MS]:
                del self.minutes[old]
        keys = range(start, end + 1, MINUTE_MS)
        labels = [datetime.fromtimestamp(m / 1000, CST).strftime("%H:%M") for m in keys]
        empty: Counter[str] = Counter()
        return {"minutes": labels, **{s: [self.minutes.get(m, empty)[s] for m in keys] for s in STATUSES}}

    def summary(self, now_ms: int | None) -> dict[str, Any]:
        """Every figure of the page, as plain JSON values. `now_ms` None: a finished run (the report)."""
        lat = self.latency
        seconds = {f"p{q}": _s(lat.percentile(q / 100)) for q in (50, 95, 99)}
        return {
            "since": None if self.since_ms is None else _iso(self.since_ms),
            "daily": self.daily,
            "now": None if now_ms is None else _iso(now_ms),
            "clock": self.clock,
            "decided": {**{s: self.statuses[s] for s in STATUSES}, "total": self.decided},
            "valueCleared": _yuan(self.cleared_fen),
            "taxAssessed": _yuan(self.tax_fen),
            "receipt": {
                "measured": lat.count,
                "withinTenMinutes": lat.within,
                "share": None if not lat.count else lat.within / lat.count,
                **seconds,
            },
            "throughput": round(self.throughput(now_ms), 2),
            "perMinute": self.per_minute(now_ms),
            "reasons": self.reasons.most_common(TOP),
            "deadLetters": {"total": sum(self.dead_reasons.values()), "byReason": self.dead_reasons.most_common(TOP)},
            "platforms": _breakdown(self.platforms),
            "logistics": _breakdown(self.carriers),
            "unreadable": self.unreadable,
            "repeats": self.repeats,
        }


def _breakdown(table: dict[str, Breakdown]) -> list[dict[str, Any]]:
    rows = sorted(table.items(), key=lambda kv: (-sum(kv[1].statuses.values()), kv[0]))[:TOP]
    return [
        {
            "code": code,
            "decided": sum(entry.statuses.values()),
            "cleared": sum(entry.statuses[s] for s in CLEARED),
            "flagged": entry.statuses["REVIEW"] + entry.statuses["REJECTED"],
            "value": _yuan(entry.cleared_fen),
        }
        for code, entry in rows
    ]


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _iso(ms: int) -> str:
    return (datetime.fromtimestamp(ms // 1000, CST) + timedelta(milliseconds=ms % 1000)).isoformat(timespec="seconds")
