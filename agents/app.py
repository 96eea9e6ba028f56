"""The Faust app: topics (raw bytes), tables, the two agents, the timers, web views.

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
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from faust.types import TP, StreamT

from agents import buffer, consumer
from agents.acks import Delivery
from agents.batch import CandidateBatch
from agents.changelog import Changelog
from agents.commits import Commits
from agents.events import QuietMonitor, RawSchema
from agents.faust_internals import (
    DirectTable,
    TableManager,
    ack_refilled,
    assignor_for,
    before_active_recovery,
    commit_offsets,
    committed_offset,
    is_recovered,
    partition_items,
    track_changelog,
    write_changelog_through,
)
from agents.flow import InputFlow
from agents.group import GroupProbe
from agents.join import JoinProcessor, kind_of_topics
from agents.memory import CyclicGC, trim
from agents.metrics import Metrics
from agents.producer import Producer, Tally
from agents.quota import QuotaProcessor, write_handover
from agents.restore import restore
from agents.sender import Dest, Headers, Msg, Sender
from agents.sequence import Sequencer
from agents.side_reader import SideReader
from agents.spill import SPILL_DIR, Spills
from agents.stores import SharedMemory, share_memory
from agents.stream import drain
from agents.topics import candidates_topic
from agents.trace import maybe_trace
from agents.unread import UnreadCheck
from agents.views import add_views
from agents.wakeup import Wakeups
from clearance.clock import wall_ms
from clearance.kafka import MAX_MESSAGE_BYTES, producer_config, ssl_context
from clearance.settings import Settings
from pipeline.memo import forget as forget_memos

log = logging.getLogger("clearance.worker")

_PRODUCER_LINGER_S = 0.005
_STOP_FLUSH_S = 10.0
_PRODUCER_BATCH_BYTES = 1024 * 1024
_RAW_TABLE: dict[str, Any] = {"key_type": bytes, "value_type": bytes}


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
    commits: Commits
    producer: Producer | None  # None with exactly_once: Faust's transactional producer sends
    rocksdb: SharedMemory  # every table's RocksDB cache and memtable budget (agents/stores.py)
    collector: CyclicGC  # Python's cyclic GC: installed by the worker, frozen once ready (agents/memory.py)


@dataclass
class _Tables:
    states: Any
    clocks: Any
    quotas: Any


def build(settings: Settings) -> Pipeline:
    """Wire the app for `settings`; nothing connects to Kafka until the worker starts."""
    app = _app(settings)
    consumer.use_in(app, settings.fetch_min_kb * 1024, settings.fetch_wait_ms)
    buffer.use_in(app)
    candidates = app.topic(
        candidates_topic(settings), partitions=settings.partitions, internal=True, schema=RawSchema()
    )
    rocksdb = SharedMemory.of_megabytes(settings.rocksdb_cache_mb)
    tables = _tables(app, settings, rocksdb)
    if settings.fast_restore:
        _fast_restore(app, settings)
    metrics = Metrics()
    producer, delivery, changelog = _producer(app, settings, tables)
    # What the processors read and write: straight to RocksDB when librdkafka carries the
    # changelogs (agents/faust_internals.DirectTable; the writes wait in the changelog for one
    # WriteBatch per partition per ack batch); Faust's tables with exactly_once.
    access = (
        tables
        if changelog is None
        else _Tables(*(DirectTable(t, changelog) for t in (tables.states, tables.clocks, tables.quotas)))
    )
    sender = _sender(app, settings, candidates, metrics, delivery, producer)
    side = SideReader(settings)
    join_topics = {*settings.input_topics, settings.topic_ticks}
    sequences = {
        "join": _sequencer(app, side, metrics, join_topics),
        "quota": _sequencer(app, side, metrics, {candidates.get_topic_name()}),
    }
    reads = (sequences["join"], UnreadCheck(app, side, sequences["join"], metrics), side)
    spills = Spills(Path(settings.data_dir) / SPILL_DIR, rocksdb)
    wakeups = _wakeups(settings, producer, metrics)
    flowing = app.flow_control.is_active  # Faust's flow control: suspended while a rebalance runs
    joiner = _joiner(settings, tables, access, sender, reads, InputFlow(app), spills, changelog, wakeups, flowing)
    ordered = settings.quota_order != "arrival"
    quota = QuotaProcessor(
        settings.rules(),
        quotas=access.quotas,
        sender=sender,
        sources=settings.partitions if ordered else None,
        flowing=flowing,
    )
    maybe_trace(joiner)
    commits = _commits(app, settings)
    _agents(app, settings, candidates, (joiner, quota), sequences, (delivery, commits))
    collector = CyclicGC(settings.gc_young_threshold)
    _timers(app, settings, (delivery, commits), producer, collector)
    hand_over = _hand_over(quota, tables, delivery, producer)
    _on_stop(app, hand_over, commits, wakeups)
    _on_rebalance(app, (joiner, quota), (delivery, commits), sequences.values(), hand_over)
    by_topic = dict.fromkeys(join_topics, sequences["join"]) | {candidates.get_topic_name(): sequences["quota"]}
    pipeline = Pipeline(
        app, settings, joiner, quota, metrics, delivery, by_topic, commits, producer, rocksdb, collector
    )
    add_views(pipeline)
    return pipeline


def _app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        monitor=QuietMonitor(),  # Faust's per-message statistics, which nothing here reads (agents/events.py)
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=settings.data_dir,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # Faust declares its internal topics on every start, one CreateTopics round trip each, in
        # turn (eight, 0.6 s of a worker's start here); `prepare_broker` created them before Faust
        # starts (agents/topics.py).
        topic_allow_declare=False,
        # Faust's leader-election topic serves `on_leader` timers and livecheck; the worker has neither.
        topic_disable_leader=True,
        TableManager=TableManager,  # without Faust's 1 s sleep before the consumer subscribes
        # one generation for processes started together
        PartitionAssignor=assignor_for(settings.siblings, GroupProbe(settings) if settings.siblings > 1 else None),
        table_standby_replicas=settings.standby_replicas,
        stream_wait_empty=False,  # the join holds unacked messages in its merge queues (see agents/join.py)
        broker_commit_interval=settings.commit_seconds,
        # How long a dead worker keeps its partitions: Faust's 60 s default held a kill -9'd worker's
        # partitions for a minute before the group moved them. Heartbeats come from the consumer's own
        # thread, so a busy event loop does not miss them. A member learns of a rebalance from a
        # heartbeat's answer, and a joining one waits for every member to rejoin: with Faust's 3 s
        # interval the second of two processes started together waited 3.6 s (bench case d), 1.4 to
        # 1.6 s at 1 s, 0.6 s at 0.25 s (INFO logs, 4 December). Four small requests a second.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(0.25, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        # At most this many records per fetch loop (clearance/settings.py, issue 13's soak).
        broker_max_poll_records=settings.max_poll_records or None,
        consumer_max_fetch_size=settings.max_fetch_kb * 1024,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        producer_acks=-1,
        # Batch the produce requests: with Faust's default (linger 0, 16 KiB batches) every send
        # became its own request, and writing and parsing those was the worker's largest cost
        # (pyinstrument, case c: ~28 of 57 s of CPU; see benchmarks/RESULTS.md "Worker profile").
        # Nothing waits on a single send (agents/acks.py), so 5 ms of linger costs no throughput.
        producer_linger=_PRODUCER_LINGER_S,
        producer_max_batch_size=_PRODUCER_BATCH_BYTES,
        # faust-streaming's repaired Cython fast paths (off by default): the stream iterator takes
        # the events already queued instead of awaiting the channel for each, and the conductor
        # decodes a message once. Our topics are raw bytes with one channel each, so the decoding
        # difference it documents cannot apply (benchmarks/RESULTS.md, issue 12).
        cython_optimizations=True,
        web_enabled=True,
        web_port=settings.web_port,
        # Only this host unless told (CLEARANCE_WEB_BIND; the container sets 0.0.0.0 for its probes).
        web_bind=settings.web_bind,
        broker_credentials=broker_credentials(settings),
    )


def broker_credentials(settings: Settings) -> Any:
    """The worker's Kafka security, from the settings every other client uses (clearance/kafka.py)."""
    context = ssl_context(settings)
    if settings.sasl:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _tables(app: faust.App, settings: Settings, shared: SharedMemory) -> _Tables:
    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=settings.partitions, **_RAW_TABLE)

    tables = _Tables(table("join"), table("clock"), table("quota"))
    # RocksDB: one block cache and one memtable budget for every database of the process
    # (agents/stores.py). Before, each of the 36 databases had its own (issue 13).
    share_memory((tables.states, tables.clocks, tables.quotas), shared)
    return tables


def _fast_restore(app: faust.App, settings: Settings) -> None:
    """The changelogs read into local RocksDB before Faust's recovery reads them (agents/restore.py)."""
    before_active_recovery(app, functools.partial(restore, settings))


def _producer(
    app: faust.App, settings: Settings, tables: _Tables
) -> tuple[Producer | None, Delivery, Changelog | None]:
    """librdkafka for every record and the tables' changelogs once per key per ack batch
    (agents/producer.py, agents/changelog.py); with exactly_once, Faust's transactional
    producer and its changelog sends, tracked one by one."""
    every = (tables.states, tables.clocks, tables.quotas)
    if settings.processing_guarantee == "exactly_once":
        delivery = Delivery()
        for table in every:
            track_changelog(table, delivery.track)
        return None, delivery, None
    worker = {"client.id": f"{settings.app_id}-worker", "linger.ms": settings.producer_linger_ms}
    producer = Producer({**producer_config(settings), **worker})
    changelog = Changelog(producer)
    for table in every:
        write_changelog_through(table, changelog, local=True)
    return producer, Delivery(held=[changelog], counter=producer.tally), changelog


def _tally(delivery: Delivery) -> Tally:
    """The open batch's tally: made by the producer (`_producer` gives it `producer.tally`)."""
    return cast(Tally, delivery.tally)


def _sender(
    app: faust.App, settings: Settings, candidates: Any, metrics: Metrics, delivery: Delivery, producer: Producer | None
) -> Sender:
    """The one Sender: declarations, candidates and dead letters (through librdkafka, or
    Faust's topics with exactly_once)."""
    names = (settings.topic_matched, settings.topic_flagged, settings.topic_deadletter)
    outputs = {name: app.topic(name, schema=RawSchema()) for name in names}
    outputs[candidates.get_topic_name()] = candidates

    # With librdkafka every send of an ack batch is counted into the batch's tally (one object
    # per batch, not a future per record); Faust's sends give a future each.
    async def send(topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> Awaitable[Any] | None:
        if producer is not None:
            producer.count(_tally(delivery), topic, key, value, headers)
            return None
        return await outputs[topic].send(key=key, value=value, headers=headers)

    def count_to(topic: str, partition: int, value: bytes) -> None:  # librdkafka only: into the open tally
        cast(Producer, producer).count(_tally(delivery), topic, None, value, partition=partition)

    async def send_to(topic: str, partition: int, value: bytes) -> Awaitable[Any] | None:
        if producer is not None:
            count_to(topic, partition, value)
            return None
        return await outputs[topic].send(key=None, value=value, partition=partition)

    destinations: dict[Dest, str] = {
        "matched": settings.topic_matched,
        "flagged": settings.topic_flagged,
        "candidates": candidates.get_topic_name(),
    }
    batch = None
    if producer is not None:  # with exactly_once, Faust's topic: a record per candidate
        batch = CandidateBatch(settings.partitions, functools.partial(count_to, candidates.get_topic_name()))
        delivery.held.append(batch)  # drained when the ack batch is sealed
    return Sender(
        send,
        destinations,
        settings.topic_deadletter,
        metrics,
        delivery,
        send_to=send_to,
        partitions=settings.partitions,
        batch=batch,
    )


def _sequencer(app: faust.App, side: SideReader, metrics: Metrics, topics: set[str]) -> Sequencer:
    def assigned() -> list[tuple[str, int]]:
        return [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in topics]

    return Sequencer(start_offsets=side.start_offsets, read_range=side.read, assigned=assigned, metrics=metrics)


def _wakeups(settings: Settings, producer: Producer | None, metrics: Metrics) -> Wakeups | None:
    """Ticks at the moment a partition's merge wait ends (agents/wakeup.py); none with exactly_once
    (no librdkafka producer there: the regular ticks look again)."""
    if producer is None:
        return None

    def send(partition: int) -> None:
        metrics.inc("merge_wakeups")
        producer.send(settings.topic_ticks, None, orjson.dumps({"wall": wall_ms()}), partition=partition)

    return Wakeups(send)


def _joiner(
    settings: Settings,
    tables: _Tables,
    access: _Tables,
    sender: Sender,
    reads: tuple[Sequencer, UnreadCheck, SideReader],
    flow: InputFlow,
    spills: Spills,
    changelog: Changelog | None,
    wakeups: Wakeups | None,
    flowing: Callable[[], bool],
) -> JoinProcessor:
    sequence, unread, side = reads

    def scan(partition: int) -> Iterator[tuple[bytes, bytes]]:
        """The partition's states in RocksDB, the writes still waiting for their batch written first."""
        if changelog is not None:
            changelog.write_local()
        return partition_items(tables.states, partition)

    return JoinProcessor(
        settings.rules(),
        kinds=kind_of_topics(settings.kind_topics),
        tick_topic=settings.topic_ticks,
        idle_ms=int(settings.idle_seconds * 1000),
        states=access.states,
        clocks=access.clocks,
        scan=scan,
        committed=sequence.committed,
        unread=unread,
        merge_wait_ms=int(settings.merge_wait_seconds * 1000),
        sender=sender,
        wall=wall_ms,
        publish_every_ms=int(settings.watermark_seconds * 1000) if settings.quota_order != "arrival" else None,
        flow=flow,
        merge_buffer=settings.merge_buffer,
        spills=spills.open,
        wake=wakeups.at if wakeups is not None else None,
        position=sequence.handed,
        log_end=side.log_end,
        flowing=flowing,
    )


def _commits(app: faust.App, settings: Settings) -> Commits:
    """Commits that follow the released acks when Faust's own stay behind (agents/commits.py)."""
    return Commits(
        committed=lambda topic, partition: committed_offset(app, topic, partition),
        commit=lambda offsets: commit_offsets(app, offsets),
        grace_s=3 * settings.commit_seconds,
    )


def _agents(
    app: faust.App,
    settings: Settings,
    candidates: Any,
    processors: tuple[JoinProcessor, QuotaProcessor],
    sequences: dict[str, Sequencer],
    acks: tuple[Delivery, Commits],
) -> None:
    """Both agents: concurrency 1 (they write tables), our acks, the offset check."""
    joiner, quota = processors
    delivery, commits = acks
    inputs = app.topic(*settings.input_topics, settings.topic_ticks, schema=RawSchema())

    def refilled(msg: Msg) -> None:
        ack_refilled(app, msg.topic, msg.partition, msg.offset)

    sequence = sequences["join"]
    # Long enough that a backlog's uneven delivery does not count: after the crash test's restart on
    # 50,000 orders, input partitions went 3 to 6.5 s without a delivery and were read beside the
    # consumer at a 2 s stall (500 messages each, six times, then dropped when Faust delivered them).
    stall_ms = int(max(10.0, 5 * settings.tick_seconds) * 1000)
    limit = settings.max_poll_records or 500

    def high(topic: str, partition: int) -> int | None:
        try:
            value = app.consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not assigned any more
            return None
        return value if isinstance(value, int) else None

    async def tails(msg: Msg) -> list[Msg]:
        """On a tick: the input tails of its partition the consumer never delivered (agents/sequence.py)."""
        inputs_of = joiner.unpaused(msg.partition)
        return await sequence.stalled(msg.partition, inputs_of, high, stall_ms=stall_ms, limit=limit)

    @app.agent(inputs, name="join", concurrency=1)
    async def join(stream: StreamT[bytes]) -> None:
        await drain(stream, joiner.handle, sequence, delivery, commits, refilled, (settings.topic_ticks, tails))

    @app.agent(candidates, name="quota", concurrency=1)
    async def quota_stage(stream: StreamT[bytes]) -> None:
        await drain(stream, quota.handle, sequences["quota"], delivery, commits, refilled)


def _timers(
    app: faust.App,
    settings: Settings,
    acks: tuple[Delivery, Commits],
    producer: Producer | None,
    collector: CyclicGC,
) -> None:
    delivery, commits = acks
    ticks = app.topic(settings.topic_ticks, schema=RawSchema())

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def settle_heap() -> None:
        """Once recovered: what start-up built leaves the cyclic GC's walks (agents/memory.py)."""
        if not collector.frozen and is_recovered(app) and not app.rebalancing:
            collector.freeze()

    @app.timer(interval=0.2)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def release_acks() -> None:
        """Acks of a quiet stream still get released (the agents seal batches on traffic). It
        seals only: a timer that waited for the batches to settle outlasted its interval under
        a backlog, and mode logged a WARNING for it ("Timer ... is overlapping") about every
        second, 35 in a 30-second run of `clearance bench --cases c`."""
        delivery.release()

    @app.timer(interval=settings.commit_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def catch_up_commits() -> None:
        """Commit what Faust's own commits left behind the released acks (agents/commits.py)."""
        if not app.rebalancing:
            await commits.catch_up()

    if settings.malloc_trim_seconds > 0:

        @app.timer(interval=settings.malloc_trim_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
        async def give_memory_back() -> None:
            """The allocator's free memory back to the system (agents/memory.py): after a peak,
            glibc keeps what was freed in its arenas (issue 13). In a thread: it takes a few ms."""
            forget_memos()  # first: what they pin in CPython's arenas goes back with them
            await asyncio.to_thread(trim)

    @app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def tick() -> None:
        """One tick per partition: lets an idle partition's event time follow the wall clock."""
        value = orjson.dumps({"wall": wall_ms()})
        for partition in range(settings.partitions):
            if producer is not None:
                producer.send(settings.topic_ticks, None, value, partition=partition)
            else:
                await ticks.send(key=None, value=value, partition=partition, force=True)


HandOverFn = Callable[[str], Awaitable[None]]


def _hand_over(quota: QuotaProcessor, tables: _Tables, delivery: Delivery, producer: Producer | None) -> HandOverFn:
    """Before partitions go (a revocation, a clean stop): every pending ack released, and what
    the quota stage decided above its last committable offset recorded for the next owner.

    The record (agents/quota.py, "Hand-over") is taken before the flush, so every candidate
    in it had its declaration sent and its state written before the flush, which delivers
    them; it is written only when the flush delivered everything. It goes straight to the
    quota table's changelog through the producer, without recording its offset as persisted
    locally: so a worker that keeps or gets back the partition reads it in its recovery too.
    With exactly_once (Faust's producer, no librdkafka one) nothing is recorded."""
    changelog = tables.quotas.changelog_topic.get_topic_name()

    async def hand_over(why: str) -> None:
        records = quota.handover()
        try:
            await asyncio.wait_for(delivery.flush(), timeout=_STOP_FLUSH_S)
        except TimeoutError:
            log.warning("%s: sends not delivered in %.0f s; their input is read again", why, _STOP_FLUSH_S)
            return
        if producer is None or delivery.broken:
            return
        await write_handover(records, lambda t, k, v, p: producer.send(t, k, v, partition=p), changelog)

    return hand_over


def _on_stop(app: faust.App, hand_over: HandOverFn, commits: Commits, wakeups: Wakeups | None) -> None:
    """A clean stop commits what it has handled before it leaves the group.

    Faust's app stops its consumer's flow, sends `on_before_shutdown`, flushes the producer
    and only then stops the consumer, whose last act is a commit. Releasing every pending
    ack here (they wait for their sends: at most a batch age, 0.2 s, plus delivery) puts
    them into that commit; before, up to a batch per partition was re-read by the next
    owner (a graceful hand-over repeated as much as a kill -9). What the quota stage decided
    above its last commit is recorded for the next owner (`_hand_over`). Faust sends no
    revocation at a stop (`App._on_partitions_revoked` returns when the app is stopping).
    The merge's wake-ups are dropped: no tick is sent after that."""

    async def release_acks_before_the_last_commit(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        if wakeups is not None:
            wakeups.cancel()
        await hand_over("stopping")
        await commits.commit_all("stopping")

    app.on_before_shutdown.connect(release_acks_before_the_last_commit)


def _on_rebalance(
    app: faust.App,
    processors: tuple[JoinProcessor, QuotaProcessor],
    acks: tuple[Delivery, Commits],
    sequences: Any,
    hand_over: HandOverFn,
) -> None:
    """A rebalance: released acks committed, then indexes rebuilt, held candidates and
    unreleased acks dropped, offsets checked anew."""
    joiner, quota = processors
    delivery, commits = acks
    checks = list(sequences)

    def rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        joiner.forget_partitions()
        quota.forget_partitions()
        delivery.revoke()
        commits.reset()
        for check in checks:
            check.reset()

    async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Before the partitions go: the held changelog records are produced and the acks
        waiting for delivery released (so the next owner recovers this worker's last states
        from the changelog, and no record of ours can land after one of its own), then what
        was released is committed (the next owner starts after it instead of reading it again),
        and what the quota stage decided above that is recorded for the next owner (`_hand_over`)."""
        await hand_over("partitions revoked")
        await commits.commit_all("partitions revoked")
        rebalanced(sender, *args, signal=signal, **kwargs)

    app.on_partitions_revoked.connect(revoked)
    app.on_partitions_assigned.connect(rebalanced)
