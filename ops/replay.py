"""`clearance replay TRACE`: produce a trace directory into the input topics.

The three files are merged by appTime (ties: orders, payments, waybills, then line
order), as the embedded runner merges them, and produced with the project's
confluent-kafka config (murmur2_random: the Java client's partitioner, so an
order's three documents share a partition number). Key = orderNo (UTF-8); a line
without one (invalid JSON, no orderNo) is sent with key None: it is bad input the
worker dead-letters.

Pacing: as fast as possible (default), `--rate` messages/s, `--order-rate` orders/s
(converted to a message rate with the trace's messages-per-order ratio), or
`--speedup X` of the trace's own appTime clock.

Latency bookkeeping: each message is produced with an explicit timestamp equal
to the wall clock (epoch ms) read just before the `produce()` call, so the
message's Kafka CreateTime and the recorded time are the same number. `--times
FILE` writes `orderNo,produce_ms` for each order's last document (CSV).

The tick topic: `--flush-ticks` and `--watermarks` (ops/marks.py). Topics, timestamps and the
final flush: ops/producer.py.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from confluent_kafka import KafkaError, Producer

from clearance import traces
from clearance.clock import wall_ms
from clearance.kafka import KafkaUnavailable, denied, probe, producer_config
from clearance.progress import Progress
from clearance.settings import Settings
from clearance.traces import TraceError, count_lines, read_lines, trace_files
from ops.marks import Watermarks, produce_ticks
from ops.producer import check_topics, flush, produce
from pipeline.patterns import APP_TIME_PATTERN
from pipeline.records import DocKind
from pipeline.timeconv import app_time_ms

_TIME_MATCH = re.compile(APP_TIME_PATTERN).fullmatch


@dataclass(frozen=True, slots=True)
class TraceLine:
    """One raw message in merge order. `time_ms` is None for a line without a valid appTime."""

    time_ms: int | None
    rank: int
    index: int
    kind: DocKind
    raw: bytes
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Pacing:
    """When message i (0-based, appTime `t` ms) is due, in seconds after the start; None: now."""

    mode: Literal["max", "rate", "speedup"] = "max"
    value: float = 0.0

    def due(self, i: int, trace_ms: int, first_ms: int) -> float | None:
        if self.mode == "rate":
            return i / self.value
        if self.mode == "speedup":
            return (trace_ms - first_ms) / 1000.0 / self.value
        return None

    def describe(self) -> str:
        if self.mode == "rate":
            return f"{self.value:,.0f} messages/s"
        if self.mode == "speedup":
            return f"{self.value:g}x the trace clock"
        return "as fast as possible"


@dataclass(slots=True)
class ReplaySummary:
    """What one replay produced."""

    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unkeyed: int = 0
    errors: int = 0
    orders: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    pacing: str = ""
    ticks: int = 0
    ended: int = 0  # end-of-topic ticks (`{"ended": topic, "end": offset}`), with --watermarks
    marks: int = 0  # time-mark ticks (`{"through": ms, "ends": {...}}`), with --watermarks
    denied: str = ""  # the first authorization error: which user, which topic

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "messagesPerSecond": round(self.rate, 1),
            "orders": self.orders,
            "unkeyed": self.unkeyed,
            "deliveryErrors": self.errors,
            "perTopic": dict(sorted(self.per_topic.items())),
            "pacing": self.pacing,
            "ticks": self.ticks,
            "endedTicks": self.ended,
            "watermarkTicks": self.marks,
        }

    def render(self) -> str:
        return (
            f"replayed {self.messages:,} messages ({self.bytes / 1e6:,.1f} MB) in {self.seconds:.2f} s: "
            f"{self.rate:,.0f} msg/s ({self.pacing}); {self.orders:,} orders, {self.unkeyed:,} without key, "
            f"{self.errors:,} delivery errors"
            + (f"; {self.ticks} flush ticks" if self.ticks else "")
            + (f"; {self.marks} watermark and {self.ended} end-of-topic ticks" if self.marks or self.ended else "")
        )


def key_and_time(raw: bytes) -> tuple[bytes | None, int | None]:
    """orderNo (UTF-8) and appTime (epoch ms) of a raw message; None for what is absent or invalid."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if type(obj) is not dict:
        return None, None
    order_no = obj.get("orderNo")
    key = order_no.encode() if type(order_no) is str else None
    text = obj.get("appTime")
    return key, (app_time_ms(text) if type(text) is str and _TIME_MATCH(text) else None)


def read_file(path: Path, kind: DocKind, rank: int) -> Iterator[TraceLine]:
    """The lines of one trace file with their key and appTime (clearance.traces.read_lines)."""
    for index, raw in enumerate(read_lines(path)):
        key, time_ms = key_and_time(raw)
        yield TraceLine(time_ms, rank, index, kind, raw, key)


def merge(streams: Iterable[Iterator[TraceLine]]) -> Iterator[TraceLine]:
    """Merge per-file streams, given in rank order, by (appTime, rank, line) (clearance.traces.merge)."""
    return traces.merge(((line.time_ms, line) for line in stream) for stream in streams)


_POLL_GRAIN_S = 0.001  # librdkafka's poll timeout is in whole milliseconds


def order_rate_pacing(orders_per_s: float, messages: int, orders: int) -> Pacing:
    """`--order-rate`: the message rate that offers `orders_per_s` orders/s on average."""
    return Pacing("rate", orders_per_s * messages / max(orders, 1))


class _Clock:
    """Sleeps until a message is due, serving delivery callbacks meanwhile.

    librdkafka's poll waits whole milliseconds (confluent-kafka truncates the timeout), so a
    message less than 1 ms ahead goes at once: waiting for it with a shorter poll returned at
    once, again and again, and the replay spun a core (22.2 CPU-s for a 20.4 s replay at
    3,000 messages/s, on the 2-core machine the worker it measures runs on). A message goes at
    most 1 ms early; `--times` records when it really went."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.start = time.perf_counter()

    def wait(self, due: float | None) -> None:
        if due is None:
            return
        while (ahead := self.start + due - time.perf_counter()) >= _POLL_GRAIN_S:
            self.producer.poll(min(ahead, 0.05))


def replay(
    trace: Path,
    settings: Settings,
    pacing: Pacing | None = None,
    *,
    order_rate: float | None = None,
    times_path: Path | None = None,
    progress: bool = False,
    flush_ticks_ms: int | None = None,
    ticks_only: bool = False,
    watermarks_s: float | None = None,
) -> ReplaySummary:
    """Produce every line of `trace` once; return the summary. Raises ReplayError (ops/producer.py).

    With `ticks_only`, nothing of the trace is produced: it is only read for its last
    appTime, and the flush ticks are sent (the second step of a replay-then-flush). With
    `watermarks_s`, this replay tells the workers where its input stands (`Watermarks`).
    """
    present = trace_files(trace)
    left = {kind: count_lines(path) for kind, path in present}  # of each file, not produced yet
    total = sum(left.values())
    orders = next((count_lines(path) for kind, path in present if kind == "order"), 0)
    if order_rate is not None:
        pacing = order_rate_pacing(order_rate, total, orders)
    pacing = pacing or Pacing()
    summary = ReplaySummary(pacing=pacing.describe())
    errors: list[KafkaError] = []

    def on_error(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(err)
            if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED and not summary.denied:
                summary.denied = denied(msg.topic(), "write to", settings)

    marks = watermarks_s is not None and not ticks_only
    config: dict[str, Any] = {
        **producer_config(settings),
        "delivery.report.only.error": not marks,  # the marks follow every delivery
        "on_delivery": on_error,
    }
    producer = Producer(config)
    check_topics(producer, settings)
    watermarks = Watermarks(producer, settings, watermarks_s or 0.0, on_error) if marks else None
    last_time: dict[bytes, int] = {}
    bar = Progress(total, "clearance replay", enabled=progress)
    clock = _Clock(producer)
    topics = settings.kind_topics
    stream = merge(read_file(path, kind, rank) for rank, (kind, path) in enumerate(present))
    first_ms: int | None = None
    trace_ms = 0
    for i, line in enumerate(stream):
        if line.time_ms is not None:
            first_ms = line.time_ms if first_ms is None else first_ms
            trace_ms = max(trace_ms, line.time_ms)
        if ticks_only:
            continue
        clock.wait(pacing.due(i, trace_ms, first_ms if first_ms is not None else trace_ms))
        delivered = None
        if watermarks is not None:
            own_ms = line.time_ms if line.time_ms is not None else trace_ms
            summary.marks += watermarks.due(own_ms)
            delivered = watermarks.produced(own_ms)
        now_ms = wall_ms()
        produce(producer, topics[line.kind], line.raw, line.key, now_ms, on_delivery=delivered)
        if line.key is None:
            summary.unkeyed += 1
        else:
            last_time[line.key] = now_ms
        summary.messages += 1
        summary.bytes += len(line.raw)
        summary.per_topic[topics[line.kind]] = summary.per_topic.get(topics[line.kind], 0) + 1
        left[line.kind] -= 1
        if not left[line.kind] and watermarks is not None:
            summary.ended += watermarks.ended(topics[line.kind])
        if i % 1024 == 0:
            producer.poll(0)
            bar.update(i)
    if flush_ticks_ms is not None:
        # The documents are at the broker before the ticks are sent: a worker holds a flush until
        # it has received what its partition's input topics held when the flush came (agents/join.py).
        flush(producer)
        summary.ticks = produce_ticks(producer, settings, max(trace_ms, 0) + flush_ticks_ms)
    flush(producer)
    summary.seconds = time.perf_counter() - clock.start
    summary.errors = len(errors)
    summary.orders = len(last_time)
    bar.close(summary.messages)
    if times_path is not None:
        write_times(times_path, last_time)
    return summary


def write_times(path: Path, last_time: dict[bytes, int]) -> None:
    """`orderNo,produce_ms` per order: the produce time of its last document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["orderNo", "produce_ms"])
        writer.writerows((key.decode(errors="replace"), ms) for key, ms in last_time.items())


def read_times(path: Path) -> dict[str, int]:
    """The inverse of `write_times`."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        return {row[0]: int(row[1]) for row in rows}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearance replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("trace", type=Path, help="trace directory (orders/payments/waybills.jsonl)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="messages per second")
    pace.add_argument("--order-rate", type=float, help="orders per second (messages scaled by the trace's ratio)")
    pace.add_argument("--speedup", type=float, help="replay the trace's appTime clock X times faster")
    parser.add_argument("--times", type=Path, help="write orderNo,produce_ms of each order's last document (CSV)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
    parser.add_argument(
        "--flush-ticks",
        type=float,
        metavar="HOURS",
        nargs="?",
        const=-1.0,
        help="after the trace, one tick per tick-topic partition at the last appTime + HOURS "
        "(default: window + retention + 1 h), so every window closes. They are sent once every document "
        "is delivered; a worker applies a tick after everything its partition's input topics held when "
        "the tick came, however far behind it is. --ticks-only sends them alone, later",
    )
    parser.add_argument(
        "--watermarks",
        type=float,
        metavar="SECONDS",
        nargs="?",
        const=0.1,
        help="this replay alone writes the input topics: every SECONDS (default 0.1) tell the workers, in a "
        "tick per partition, up to which appTime every document is delivered, and once a topic's last "
        "document is, that it ended; their merge then need not wait for a topic to fall silent",
    )
    parser.add_argument(
        "--ticks-only", action="store_true", help="produce nothing of the trace, only its --flush-ticks (default hours)"
    )
    parser.add_argument("--progress", choices=["auto", "always", "never"], default="auto", help="bar on stderr")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def cli(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("rate", "order_rate", "speedup", "watermarks"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    try:
        settings = Settings.from_env().with_overrides(bootstrap=args.bootstrap)
    except ValueError as exc:
        print(f"clearance replay: {exc}", file=sys.stderr)
        return 2
    pacing = Pacing("rate", args.rate) if args.rate else Pacing("speedup", args.speedup) if args.speedup else None
    ticks_ms = None
    if args.ticks_only and args.flush_ticks is None:
        args.flush_ticks = -1.0
    if args.flush_ticks is not None:
        hours = args.flush_ticks if args.flush_ticks >= 0 else settings.window_hours + settings.retention_days * 24 + 1
        ticks_ms = int(hours * 3_600_000)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    try:
        probe(settings)
    except KafkaUnavailable as exc:
        print(f"clearance replay: {exc}", file=sys.stderr)
        return 1
    try:
        summary = replay(
            args.trace,
            settings,
            pacing,
            order_rate=args.order_rate,
            times_path=args.times,
            progress=show,
            flush_ticks_ms=ticks_ms,
            ticks_only=args.ticks_only,
            watermarks_s=args.watermarks,
        )
    except TraceError as exc:  # ReplayError included
        print(f"clearance replay: {exc}", file=sys.stderr)
        return 1
    if summary.denied:
        print(f"clearance replay: {summary.denied}", file=sys.stderr)
    print(orjson.dumps(summary.as_dict()).decode() if args.json else summary.render())
    return 1 if summary.errors else 0
