"""What a replay says on the tick topic: flush ticks, and with `--watermarks` its time marks.

The worker reads them in agents/join.py: a flush tick (`{"eventTime": ms}`) moves event time
past every window; a time mark (`{"through": ms, "ends": {...}}`) and an end-of-topic tick
(`{"ended": topic, "end": offset}`) let its merge pass an empty queue without waiting for the
topic to fall silent (pipeline/merge.py).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # exported, untyped

from clearance.clock import wall_ms
from clearance.kafka import admin_config
from clearance.settings import Settings
from ops.producer import flush, partition_count, produce

_MARK_STEP_S = 0.005  # at most this long for the wall clock to pass a time mark's millisecond


class Watermarks:
    """`--watermarks`: this replay, the one producer of its input topics, tells the workers where
    its input stands, so that their merge need not wait for a topic to fall silent before it
    passes an empty queue (pipeline/merge.py):

    - every `every_s`, one tick per partition `{"through": ms, "ends": {topic: offset}}`: every
      document with an appTime up to `ms` produced before the tick is delivered, and each input
      topic of that partition ended at `offset` when the broker was asked, after those deliveries.
      The messages are followed in produce order to the first one not delivered yet, and `ms`
      is below the appTime of every message from that one on, and of every message produced
      between the question and the tick. In a trace in appTime order (docs/CONTRACT.md) that is the
      first undelivered message's appTime; a line earlier than one before it (a trace out of
      order) holds the marks below it until it is delivered, so a mark never covers a document
      still on its way. A message produced after the tick has a later timestamp (the tick's
      millisecond is waited out), so the worker's check that the head was produced before the
      mark (`sent_ms <= made_ms`) leaves it out;
    - once the last document of a topic is delivered, `{"ended": topic, "end": offset}` (`ended`).

    The broker's answer to a mark's ListOffsets is not waited for: the mark goes once it has come
    (at a later message), so a slow broker delays the marks, not the replay's pacing. A message
    whose delivery failed holds the marks where they are (its workers then wait as they would
    without them). What it costs: a delivery report per message, a ListOffsets of every input
    partition per mark."""

    def __init__(
        self, producer: Producer, settings: Settings, every_s: float, on_error: Callable[[Any, Any], None]
    ) -> None:
        self.producer, self.settings, self.every_s, self.on_error = producer, settings, every_s, on_error
        self.partitions = partition_count(producer, settings.topic_ticks, settings)
        self.admin = AdminClient(admin_config(settings))
        self.sent: deque[list[Any]] = deque()  # [appTime ms, delivered] of each message, in produce order
        self.next_s = time.perf_counter() + every_s
        self.last = -1  # the last mark sent
        self.asked: tuple[int, dict[TopicPartition, Any]] | None = None  # a mark waiting for its ends
        self.since_asked: int | None = None  # the smallest appTime produced since the mark was asked

    def produced(self, time_ms: int) -> Callable[[KafkaError | None, Any], None]:
        """The delivery callback of the message about to be produced (appTime `time_ms`)."""
        entry = [time_ms, False]
        self._drop_delivered()  # kept no longer, however far apart the marks are
        self.sent.append(entry)
        if self.asked is not None and (self.since_asked is None or time_ms < self.since_asked):
            self.since_asked = time_ms
        on_error = self.on_error

        def delivered(err: KafkaError | None, msg: Any) -> None:
            on_error(err, msg)
            if err is None:
                entry[1] = True

        return delivered

    def due(self, next_ms: int) -> int:
        """Before a message of appTime `next_ms` is produced: the ticks of a mark whose ends have
        come, and a new mark asked for when one is due and the input has moved on; the number
        of ticks sent."""
        ticks = self._send_answered()
        now = time.perf_counter()
        if self.asked is not None or now < self.next_s:
            return ticks
        self.next_s = now + self.every_s
        self.producer.poll(0)  # the delivery reports that came
        self._drop_delivered()
        # Nothing up to it is still on its way: below every message from the first undelivered
        # one on (the first one's appTime in a trace in appTime order) and below the next one.
        through = min(min((entry[0] for entry in self.sent), default=next_ms), next_ms) - 1
        if through > self.last:
            self.asked = (through, self._ask(self.settings.input_topics))
            self.since_asked = None
        return ticks

    def ended(self, topic: str) -> int:
        """Once every document of `topic` is delivered, one tick per partition of the tick topic,
        `{"ended": topic, "end": offset}` with that partition's log end offset: a worker then stops
        waiting for that topic's queue of the partition once it has received up to `end`. 0 ticks
        when the broker does not give the ends (the workers wait as they would have)."""
        flush(self.producer)
        return _ended_ticks(self.producer, self.settings, self.partitions, self._ask([topic]), [topic])

    def _drop_delivered(self) -> None:
        """Forget the messages delivered before the first one that is not (produce order)."""
        sent = self.sent
        while sent and sent[0][1]:
            sent.popleft()

    def _ask(self, topics: Iterable[str]) -> dict[TopicPartition, Any]:
        """A ListOffsets (latest) of every partition of `topics`: the futures of its answers."""
        return _ask_ends(self.admin, topics, self.partitions)

    def _send_answered(self) -> int:
        """The ticks of the mark asked for, once the broker has answered (0 before, or when it
        failed: the next mark is asked for instead)."""
        if self.asked is None or not all(future.done() for future in self.asked[1].values()):
            return 0
        through, futures = self.asked
        self.asked = None
        if self.since_asked is not None:  # produced after the question: maybe beyond the ends
            through = min(through, self.since_asked - 1)
        if through <= self.last:
            return 0
        try:
            ends = _answered(futures)
        except KafkaException as exc:
            print(f"clearance replay: a watermark not sent ({exc})", file=sys.stderr)
            return 0
        topics = self.settings.input_topics
        made = wall_ms()
        sent = _tick_each(
            self.producer,
            self.settings,
            self.partitions,
            lambda p: {"through": through, "ends": {t: ends[t, p] for t in topics}},
            made,
        )
        self.last = through
        waited = time.perf_counter() + _MARK_STEP_S  # bounded: a wall clock stepped back waits no longer
        while wall_ms() <= made and time.perf_counter() < waited:  # the next message is stamped after the mark
            time.sleep(0.0002)
        return sent


def produce_ended(producer: Producer, settings: Settings) -> int:
    """Input already delivered, whose producer writes no more of it (a benchmark's pre-loaded
    backlog, a backfill loaded by another tool): for each input topic, one tick per partition of
    the tick topic, `{"ended": topic, "end": offset}` with that partition's log end offset now,
    as `clearance replay --watermarks` sends once a topic's last document is delivered. The
    workers' merge then applies the last documents of a partition at once, instead of waiting
    for the topics to fall silent (`CLEARANCE_MERGE_WAIT_SECONDS`, pipeline/merge.py). Input
    produced after this call revokes a tick's end (the worker sees it go past `end`). Only the
    ticks' producer is flushed here: what the input's own producers sent and was not delivered
    yet is not in the ends. 0 ticks when the broker does not give the ends."""
    partitions = partition_count(producer, settings.topic_ticks, settings)
    topics = settings.input_topics
    admin = AdminClient(admin_config(settings))  # kept until answered: a client dropped never answers
    sent = _ended_ticks(producer, settings, partitions, _ask_ends(admin, topics, partitions), topics)
    flush(producer)
    return sent


def _ask_ends(admin: AdminClient, topics: Iterable[str], partitions: int) -> dict[TopicPartition, Any]:
    """A ListOffsets (latest) of partitions 0..`partitions`-1 of `topics`: the futures of its answers."""
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    wanted = {TopicPartition(topic, p): latest for topic in topics for p in range(partitions)}
    return dict(admin.list_offsets(wanted, request_timeout=30))


def _ended_ticks(
    producer: Producer, settings: Settings, partitions: int, asked: dict[TopicPartition, Any], topics: Sequence[str]
) -> int:
    """`{"ended": topic, "end": offset}` on each partition of the tick topic for each of `topics`,
    with the ends `asked` gives; 0 ticks when the broker did not give them."""
    try:
        ends = _answered(asked)
    except KafkaException as exc:
        print(f"clearance: the end of {', '.join(topics)} not sent ({exc})", file=sys.stderr)
        return 0
    sent = 0
    for topic in topics:
        sent += _tick_each(producer, settings, partitions, _end_of(topic, ends))
    return sent


def _end_of(topic: str, ends: dict[tuple[str, int], int]) -> Callable[[int], dict[str, Any]]:
    """The body of `topic`'s end-of-topic tick on each partition."""
    return lambda partition: {"ended": topic, "end": ends[topic, partition]}


def _answered(futures: dict[TopicPartition, Any]) -> dict[tuple[str, int], int]:
    """The log end offsets a ListOffsets gave, by (topic, partition)."""
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def produce_ticks(producer: Producer, settings: Settings, event_ms: int) -> int:
    """One tick per partition of the tick topic, `{"eventTime": ms}`: event time moves past every window."""
    partitions = partition_count(producer, settings.topic_ticks, settings)
    return _tick_each(producer, settings, partitions, lambda p: {"eventTime": event_ms})


def _tick_each(
    producer: Producer, settings: Settings, partitions: int, body: Callable[[int], Any], now_ms: int | None = None
) -> int:
    """One tick on each partition of the tick topic, `body(partition)` as JSON, each with the
    timestamp `now_ms` (default: the wall clock as each is produced); how many."""
    for partition in range(partitions):
        stamp = now_ms if now_ms is not None else wall_ms()
        produce(producer, settings.topic_ticks, orjson.dumps(body(partition)), None, stamp, partition)
    return partitions
