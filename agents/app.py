"""The Faust app: topics (raw bytes), tables, the two agents, the tick timer, web views.

Topics (all with `settings.partitions` partitions, so Faust's assignor puts
partition N of every one of them, changelogs included, on the same worker):
  orders, payments, waybills, ticks  -> join agent (one Faust topic, four names)
  {app_id}-candidates                -> quota agent (repartitioned by buyer)
  matched, flagged, deadletter       <- outputs
Tables (rocksdb://, raw bytes, changelog): `join` (orderNo -> state + outbox),
`clock` (partition -> event time, written on ticks), `quota` (buyer -> BuyerQuota).
Every value on the wire is our own JSON (orjson); no Faust models anywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View

from agents.acks import Ack, Delivery
from agents.join import JoinProcessor
from agents.metrics import MetricName, Metrics
from agents.quota import QuotaProcessor
from agents.sender import Dest, Headers, Msg, Sender
from agents.sequence import Sequencer
from agents.side_reader import SideReader
from agents.topics import candidates_topic
from clearance.clock import wall_ms
from clearance.kafka import MAX_MESSAGE_BYTES
from clearance.settings import Settings
from pipeline.records import DocKind

log = logging.getLogger("clearance.worker")

_PRODUCER_LINGER_S = 0.005
_PRODUCER_BATCH_BYTES = 1024 * 1024
# Nothing in the per-message path waits for the network any more, so with a full stream buffer an
# agent could run long stretches without giving the event loop back; yield every few messages so the
# fetcher, the producer's sender, the ack-settling tasks and the other agent get their turn.
_YIELD_EVERY = 16
_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class Pipeline:
    """The app and what the worker and the web views need of it."""

    app: faust.App
    settings: Settings
    joiner: JoinProcessor
    quota: QuotaProcessor
    metrics: Metrics
    delivery: Delivery
    sequences: dict[str, Sequencer]  # topic -> the offset check of the agent that reads it


async def _drain(
    stream: StreamT[bytes], handle: Callable[[Msg, Ack], Awaitable[None]], sequencer: Sequencer, delivery: Delivery
) -> None:
    """Hand every event to `handle` with its ack (acks are ours: delivery-gated, see
    faust_acks), in offset order without holes (see faust_sequence), giving the event
    loop back every few messages."""
    event: EventT[bytes]
    handled = 0
    async for event in stream.noack().events():  # type: ignore[attr-defined]  # StreamT omits noack
        msg = _msg(event)
        try:
            before, admit = await sequencer.admit(msg)
        except Exception as exc:  # noqa: BLE001 - the check failed: go on, but commit nothing more
            delivery.fail(f"offset check of {msg.topic}[{msg.partition}]@{msg.offset} failed: {type(exc).__name__}")
            before, admit = [], True
        for missed in before:
            await handle(missed, _already_acked)
        if admit:
            await handle(msg, event.ack)
        handled += 1
        if handled % _YIELD_EVERY == 0:
            await asyncio.sleep(0)


def _maybe_trace(joiner: JoinProcessor) -> None:
    """CLEARANCE_TRACE_FILE: one line per applied document and per event-time jump (debugging)."""
    import os

    path = os.environ.get("CLEARANCE_TRACE_FILE")
    if not path:
        return
    from faust.streams import current_event

    handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def trace(what: str, msg: Msg, order_no: str, time_ms: int, event_ms: int) -> None:
        event = current_event()
        where = f"{event.message.topic}[{event.message.partition}]@{event.message.offset}" if event else "-"
        handle.write(
            f"{wall_ms()} {what} {msg.topic}[{msg.partition}]@{msg.offset} {order_no} {time_ms} {event_ms} {where}\n"
        )

    joiner.trace = trace


def _already_acked() -> None:
    """The ack of a message read beside Faust: nothing to do. Faust counts the offsets it skipped
    as a gap and commits past them with the next acked offset, which is acked only after these
    messages were handled and their outputs delivered (faust_acks: acks in order)."""


def build(settings: Settings) -> Pipeline:
    """Wire the app for `settings`; nothing connects to Kafka until the worker starts."""
    config = settings.rules()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=settings.data_dir,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=0,
        stream_wait_empty=False,  # the join holds unacked messages in its merge queues (see join_agent)
        broker_commit_interval=settings.commit_seconds,
        # How long a dead worker keeps its partitions: Faust's 60 s default held a kill -9'd worker's
        # partitions for a minute before the group moved them. Heartbeats come from the consumer's own
        # thread, so a busy event loop does not miss them.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=MAX_MESSAGE_BYTES,
        producer_acks=-1,
        # Batch the produce requests: with Faust's default (linger 0, 16 KiB batches) every send
        # became its own request, and writing and parsing those was the worker's largest cost
        # (pyinstrument, case c: ~28 of 57 s of CPU; see benchmarks/RESULTS.md "Worker profile").
        # Nothing waits on a single send (agents/faust_acks.py), so 5 ms of linger costs no throughput.
        producer_linger=_PRODUCER_LINGER_S,
        producer_max_batch_size=_PRODUCER_BATCH_BYTES,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind="0.0.0.0",  # noqa: S104 - probes and Prometheus scrape from outside the container
    )
    inputs = app.topic(*settings.input_topics, settings.topic_ticks, **_RAW)
    candidates = app.topic(candidates_topic(settings), partitions=settings.partitions, internal=True, **_RAW)
    states = app.Table("join", default=None, partitions=settings.partitions, **_RAW_TABLE)
    clocks = app.Table("clock", default=None, partitions=settings.partitions, **_RAW_TABLE)
    quotas = app.Table("quota", default=None, partitions=settings.partitions, **_RAW_TABLE)

    metrics = Metrics()
    destinations: dict[Dest, str] = {
        "matched": settings.topic_matched,
        "flagged": settings.topic_flagged,
        "candidates": candidates.get_topic_name(),
    }

    names = (settings.topic_matched, settings.topic_flagged, settings.topic_deadletter)
    outputs = {name: app.topic(name, **_RAW) for name in names}
    outputs[candidates.get_topic_name()] = candidates

    async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any]:
        return await outputs[topic].send(key=key, value=value, headers=headers)

    delivery = Delivery()
    for table in (states, clocks, quotas):
        _track_changelog(table, delivery)
    sender = Sender(send, destinations, settings.topic_deadletter, metrics, delivery)
    kinds: dict[str, DocKind] = {
        settings.topic_orders: "order",
        settings.topic_payments: "payment",
        settings.topic_waybills: "waybill",
    }
    side = SideReader(settings)
    join_sequence = _sequencer(app, side, metrics, {*settings.input_topics, settings.topic_ticks})
    quota_sequence = _sequencer(app, side, metrics, {candidates.get_topic_name()})
    unread = _Unread(app, side, join_sequence)
    joiner = JoinProcessor(
        config,
        kinds=kinds,
        tick_topic=settings.topic_ticks,
        idle_ms=int(settings.idle_seconds * 1000),
        states=states,
        clocks=clocks,
        scan=lambda partition: _partition_items(states, partition),
        committed=lambda topic, partition: _committed(app, TP(topic, partition)),
        unread=unread,
        merge_wait_ms=int(settings.merge_wait_seconds * 1000),
        sender=sender,
        wall=wall_ms,
    )
    quota = QuotaProcessor(config, quotas=quotas, sender=sender)
    _maybe_trace(joiner)

    @app.agent(inputs, name="join", concurrency=1)
    async def join(stream: StreamT[bytes]) -> None:
        await _drain(stream, joiner.handle, join_sequence, delivery)

    @app.agent(candidates, name="quota", concurrency=1)
    async def quota_stage(stream: StreamT[bytes]) -> None:
        await _drain(stream, quota.handle, quota_sequence, delivery)

    ticks = app.topic(settings.topic_ticks, **_RAW)

    @app.timer(interval=0.2)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def release_acks() -> None:
        """Acks of a quiet stream still get released (the agents release them on traffic)."""
        await delivery.flush()

    @app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def tick() -> None:
        """One tick per partition: lets an idle partition's event time follow the wall clock."""
        value = orjson.dumps({"wall": wall_ms()})
        for partition in range(settings.partitions):
            await ticks.send(key=None, value=value, partition=partition, force=True)

    def _rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        joiner.forget_partitions()
        delivery.revoke()
        join_sequence.reset()
        quota_sequence.reset()

    app.on_partitions_revoked.connect(_rebalanced)
    app.on_partitions_assigned.connect(_rebalanced)

    sequences = {topic: join_sequence for topic in (*settings.input_topics, settings.topic_ticks)}
    sequences[candidates.get_topic_name()] = quota_sequence
    pipeline = Pipeline(app, settings, joiner, quota, metrics, delivery, sequences)
    _add_views(pipeline)
    return pipeline


_RAW_TABLE: dict[str, Any] = {"key_type": bytes, "value_type": bytes}


def _sequencer(app: faust.App, side: SideReader, metrics: Metrics, topics: set[str]) -> Sequencer:
    def assigned() -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in topics]

    return Sequencer(start_offsets=side.start_offsets, read_range=side.read, assigned=assigned, metrics=metrics)


def _track_changelog(table: Any, delivery: Delivery) -> None:
    """Make every changelog send of `table` a tracked delivery (see agents/faust_acks.py).

    Faust's Collection._send_changelog calls self.send_changelog, which returns the
    FutureMessage it otherwise drops; an instance attribute wraps it."""
    original = table.send_changelog

    def send_changelog(*args: Any, **kwargs: Any) -> Any:
        future = original(*args, **kwargs)
        delivery.track(future)
        return future

    table.send_changelog = send_changelog


def _msg(event: EventT[bytes]) -> Msg:
    m = event.message
    value = m.value if isinstance(m.value, bytes) else b""
    key = m.key if isinstance(m.key, bytes) or m.key is None else None
    return Msg(m.topic, m.partition, m.offset, key, value)


def _partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of one partition of a rocksdb:// table.

    Faust has no public per-partition iteration; its RocksDB store keeps one DB per
    partition (`_db_for_partition`) and hides its offset key in `_visible_items`.
    """
    store = table.data
    db = store._db_for_partition(partition)
    for key, value in store._visible_items(db):
        if isinstance(key, bytes) and isinstance(value, bytes):
            yield key, value


def _committed(app: faust.App, tp: TP) -> int | None:
    """The consumer's last committed offset of `tp` (Faust keeps it; no public accessor)."""
    offsets: dict[TP, int | None] = getattr(app.consumer, "_committed_offset", {})
    return offsets.get(tp)


class _Unread:
    """Whether the broker holds messages of an input partition that this worker has not received.

    The merge (join_agent) asks before it lets a document pass an empty queue, and the idle
    rule before it moves event time with the wall clock. The consumer's high watermark comes
    from its last fetch of that partition, which can be seconds old: a partition whose buffer
    still holds records, or that flow control paused, is not fetched. Trusting it let a worker
    apply all the orders of a partition before its payments and waybills, which the broker had
    held for seconds (issue 10). So when the consumer knows of nothing unread, the broker is
    asked (one ListOffsets, a few ms). An answer counts for documents that arrived before it
    was asked (`since_ms`); a newer document waits for the next question, asked at most every
    `_EVERY_MS` per partition, so a silent topic costs a few requests a second, not one per
    message. Unknown counts as unread: the merge waits (the ticks retry it)."""

    _EVERY_MS = 200

    def __init__(self, app: faust.App, side: SideReader, sequence: Sequencer) -> None:
        self._app = app
        self._side = side
        self._sequence = sequence
        self._asked: dict[tuple[str, int], tuple[int, int, int]] = {}  # tp -> (next offset, wall ms, log end)

    async def __call__(self, topic: str, partition: int, since_ms: int) -> bool:
        wanted = self._sequence.next_offset(topic, partition)
        if wanted is None:
            return True
        try:
            high = self._app.consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not assigned any more: nothing will come
            return False
        if high is None or high > wanted:
            return True
        now = wall_ms()
        asked = self._asked.get((topic, partition))
        if asked is not None and asked[0] == wanted:
            if asked[2] > wanted or asked[1] >= since_ms:
                return asked[2] > wanted
            if now - asked[1] < self._EVERY_MS:
                return True  # asked a moment ago: wait for the next try
        try:
            end = await self._side.log_end(topic, partition)
        except Exception as exc:  # noqa: BLE001 - broker unreachable: wait, the ticks retry
            log.warning("%s[%d]: log end unknown (%s); the merge waits", topic, partition, type(exc).__name__)
            return True
        self._asked[(topic, partition)] = (wanted, now, end)
        return end > wanted


def is_ready(app: faust.App) -> bool:
    """Recovered and not rebalancing: the worker is processing its partitions."""
    recovery = getattr(app.tables, "recovery", None)
    return bool(recovery is not None and recovery.completed.is_set() and not app.rebalancing)


def _gauges(pipeline: Pipeline) -> Iterator[tuple[MetricName, dict[str, str], float]]:
    """Open windows; the lag of every assigned input, tick and candidates partition.

    Lag counts from the next offset the agent will receive (its offset check knows it
    for every assigned partition once the first message arrived), else from the
    committed offset: a partition from which nothing has arrived yet shows its whole
    backlog (it used to be left out, so a worker that had not received a single payment
    of a partition reported lag 0 for it)."""
    yield "windows_open", {}, float(pipeline.joiner.open_windows)
    consumer = pipeline.app.consumer
    for tp in sorted(consumer.assignment()):
        sequence = pipeline.sequences.get(tp.topic)
        if sequence is None:
            continue  # changelogs
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - not fetched yet: no lag to report
            continue
        if high is None:
            continue
        done = sequence.next_offset(tp.topic, tp.partition)
        if done is None:
            done = _committed(pipeline.app, tp) or 0
        yield "consumer_lag", {"topic": tp.topic, "partition": str(tp.partition)}, float(max(high - done, 0))


def _add_views(pipeline: Pipeline) -> None:
    app = pipeline.app

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        if pipeline.delivery.broken:
            return self.text("sends failed: restart me\n", status=503)
        return self.text("ok\n")

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        ready = is_ready(app)
        return self.text("ready\n" if ready else "not ready\n", status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        body = pipeline.metrics.render(_gauges(pipeline))
        return self.text(body, content_type="text/plain; version=0.0.4")
