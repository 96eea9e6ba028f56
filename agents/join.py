"""The join stage on Kafka: one input message in, table writes and sends out.

The per-message sequence is the embedded runner's (pipeline/engine.py): parse ->
advance the partition's event time, closing every window whose deadline is
before it, in deadline order -> `step` -> write the state -> send the emits. The
only differences are per-partition event time, the tick topic (idle advance and
explicit flushes) and the outbox (agents/faust_state.py) that makes a crash lose
nothing.

Merge order: the embedded runner applies documents in appTime order (ties:
orders, payments, waybills). Faust hands a worker the four topics of a partition
in whatever chunks it fetched, so one topic can run thousands of messages ahead
of another (a backlog, a restart) and a late document would close windows whose
other documents are still unread. So, like Kafka Streams' PartitionGroup, each
partition buffers parsed documents in one queue per input topic and applies the
head with the smallest (appTime, topic rank, offset) only while every queue is
non-empty. An empty queue is passed over only when its topic has been silent for
`merge_wait_ms` and the broker holds nothing of it that this worker has not received
(`unread`: the consumer's high watermark, confirmed by asking the broker after the
document to be applied arrived, since the consumer's own figure can be seconds old).
Buffered messages are acked (committable) only once applied: a crash re-reads them.

Deadline index: an in-memory heap per partition, with lazy deletion as in
pipeline/timeline.py. It is rebuilt from the partition's RocksDB state (one scan)
the first time a message of that partition arrives after an assignment, so it
survives restarts and rebalances without a single extra changelog write. The
same scan re-sends in-doubt outbox entries and yields a lower bound of the event
time; the clock table (written on ticks only) gives the last persisted value.

`handle` never raises: bad input is dead-lettered, a bug is logged (no personal
data), dead-lettered as INTERNAL_ERROR, and processing goes on.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import orjson

from agents.acks import Ack
from agents.outbox import MAX_OUTBOX, OutboxEntry, Stored, decode_stored, encode_stored
from agents.sender import Msg, Sender, Table, emit_of
from pipeline.config import RulesConfig
from pipeline.engine import PARSERS
from pipeline.errors import InvalidRecord, StateCodecError
from pipeline.join import Candidate, JoinState, Step, expire, step
from pipeline.records import DocKind, Document

log = logging.getLogger("clearance.worker.join")

Scan = Callable[[int], Iterable[tuple[bytes, bytes]]]
Committed = Callable[[str, int], int | None]
Unread = Callable[[str, int, int], Awaitable[bool]]  # (topic, partition, asked no earlier than ms)
_RANK: dict[DocKind, int] = {"order": 0, "payment": 1, "waybill": 2}


@dataclass(slots=True)
class Queued:
    """A parsed document waiting for its turn in merge order."""

    doc: Document | None  # None: dead-lettered, waiting only to be acked in offset order
    msg: Msg
    ack: Ack
    received_ms: int = 0  # wall clock when it arrived


KEY_MISMATCH = "Kafka key is not the orderNo"


# The split guard: a partition whose windows nearly all close incomplete is not joining its
# three topics (issue 10: one topic's documents were applied long before the other two's).
_SPLIT_WARN_MIN = 50
_SPLIT_WARN_SHARE = 0.8


@dataclass(slots=True)
class Partition:
    """What the join knows of one partition besides the table: time and the deadline heap."""

    event_ms: int = 0
    persisted_ms: int = 0
    input_event_ms: int = 0
    input_wall_ms: int = 0
    open_windows: int = 0
    completed: int = 0  # windows decided complete since the assignment
    incomplete: int = 0  # windows closed with a document missing since the assignment
    warn_at: int = _SPLIT_WARN_MIN
    heap: list[tuple[int, str]] = field(default_factory=list)
    queues: tuple[deque[Queued], ...] = field(default_factory=lambda: (deque(), deque(), deque()))
    last_seen: list[tuple[int, int]] = field(default_factory=lambda: [(-1, 0)] * 3)  # (offset, wall ms) per topic


class JoinProcessor:
    """The join agent's logic over a state table and a clock table."""

    def __init__(
        self,
        config: RulesConfig,
        *,
        kinds: dict[str, DocKind],
        tick_topic: str,
        idle_ms: int,
        states: Table,
        clocks: Table,
        scan: Scan,
        committed: Committed,
        unread: Unread,
        merge_wait_ms: int,
        sender: Sender,
        wall: Callable[[], int],
    ) -> None:
        self.config = config
        self.kinds = kinds
        self.tick_topic = tick_topic
        self.idle_ms = idle_ms
        self.states = states
        self.clocks = clocks
        self.scan = scan
        self.committed = committed
        self.unread = unread
        self.merge_wait_ms = merge_wait_ms
        self.topics = {_RANK[kind]: topic for topic, kind in kinds.items()}
        self.sender = sender
        self.delivery = sender.delivery
        self.metrics = sender.metrics
        self.wall = wall
        self.partitions: dict[int, Partition] = {}
        self.trace: Callable[[str, Msg, str, int, int], None] | None = None

    def forget_partitions(self) -> None:
        """A rebalance: rebuild every index on next use (another worker may have moved on).

        Buffered documents are dropped unacked: Faust seeks to the committed offsets
        after the rebalance, so whoever owns the partition now reads them again."""
        self.partitions.clear()

    @property
    def buffered(self) -> int:
        return sum(len(q) for p in self.partitions.values() for q in p.queues)

    @property
    def open_windows(self) -> int:
        return sum(p.open_windows for p in self.partitions.values())

    async def handle(self, msg: Msg, ack: Ack) -> None:
        """Take one message of an input or tick topic; `ack` it once applied. Never raises.

        Within one topic partition messages are acked strictly in offset order (a
        dead letter waits in its queue behind earlier documents): Faust commits the
        highest contiguous acked offset and tolerates a one-message gap at the head,
        so acking out of order could commit past a message not yet applied."""
        try:
            if msg.topic == self.tick_topic:
                await self._tick(msg)
                await self.delivery.ack(ack)
                return
            part = await self._partition(msg.partition)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "join")
            await self.delivery.ack(ack)
            return
        try:
            doc = await self._receive(msg)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "join")
            doc = None
        rank = _RANK[self.kinds[msg.topic]]
        wall = self.wall()
        part.queues[rank].append(Queued(doc, msg, ack, wall))
        part.last_seen[rank] = (msg.offset, wall)
        await self._release(part, msg.partition, wall, drain=False)

    async def _receive(self, msg: Msg) -> Document | None:
        """Parse a document, or dead-letter it (None)."""
        self.metrics.inc("documents_in", msg.topic)
        try:
            doc = PARSERS[self.kinds[msg.topic]](msg.value)
        except InvalidRecord as err:
            await self.sender.dead_letter(msg, err.reason, err.field, False)
            return None
        if msg.key != doc.order_no.encode():
            await self.sender.dead_letter(msg, KEY_MISMATCH, "orderNo", False)
            return None
        return doc

    async def _release(self, part: Partition, partition: int, wall: int, *, drain: bool) -> None:
        """Apply queued documents in merge order while no queue can still receive an earlier one."""
        queues = part.queues
        while True:
            for queue in queues:  # dead letters at a head are done: ack them in their turn
                while queue and queue[0].doc is None:
                    await self.delivery.ack(queue.popleft().ack)
            if not any(queues):
                return
            rank, head = min(((r, q[0]) for r, q in enumerate(queues) if q), key=lambda rq: _merge_key(rq[1]))
            if not drain and not all(queues) and not await self._may_skip_empty(part, partition, wall, head):
                return
            queues[rank].popleft()
            if head.doc is not None:
                try:
                    await self._apply(part, head.doc, head.msg, wall)
                except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
                    await self.sender.internal_error(head.msg, exc, "join")
            await self.delivery.ack(head.ack)

    async def _may_skip_empty(self, part: Partition, partition: int, wall: int, head: Queued) -> bool:
        """`head` may pass the empty queues once their topics have been silent a while and the broker
        held nothing unread of them when asked after `head` arrived."""
        empty = [rank for rank, queue in enumerate(part.queues) if not queue]
        if any(wall - part.last_seen[rank][1] < self.merge_wait_ms for rank in empty):
            return False
        for rank in empty:
            if await self.unread(self.topics[rank], partition, head.received_ms):
                return False
        return True

    async def _any_unread(self, partition: int, since_ms: int) -> bool:
        for topic in self.topics.values():
            if await self.unread(topic, partition, since_ms):
                return True
        return False

    async def _apply(self, part: Partition, doc: Document, msg: Msg, wall: int) -> None:
        if self.trace is not None:
            self.trace("apply", msg, doc.order_no, doc.app_time_ms, part.event_ms)
        await self._advance(part, doc.app_time_ms, msg, wall)
        part.input_event_ms, part.input_wall_ms = part.event_ms, wall
        await self._step(part, doc, msg, wall)

    async def _tick(self, msg: Msg) -> None:
        self.metrics.last_tick = self.wall() / 1000.0
        try:
            body = orjson.loads(msg.value)
            explicit = body.get("eventTime") if isinstance(body, dict) else None
            if explicit is not None and (not isinstance(explicit, int) or isinstance(explicit, bool)):
                raise ValueError("eventTime is not an integer")
        except (orjson.JSONDecodeError, ValueError) as exc:
            await self.sender.dead_letter(msg, f"invalid tick: {exc}", "eventTime", False)
            return
        part = await self._partition(msg.partition)
        wall = self.wall()
        # An explicit event time (a flush at the end of a replay) comes after its input: apply all of it first.
        await self._release(part, msg.partition, wall, drain=explicit is not None)
        target = explicit
        # Idle only when the broker holds nothing unread of the partition: a partition the
        # consumer has not fetched for a while (a backlog elsewhere) is late, not idle.
        if (
            target is None
            and not any(part.queues)
            and wall - part.input_wall_ms > self.idle_ms
            and not await self._any_unread(msg.partition, part.input_wall_ms + self.idle_ms)
        ):
            target = part.input_event_ms + (wall - part.input_wall_ms)
        if target is not None:
            if self.trace is not None:
                self.trace("advance", msg, "", target, part.event_ms)
            await self._advance(part, target, msg, wall)
        if part.event_ms > part.persisted_ms:
            self.clocks[_clock_key(msg.partition)] = orjson.dumps([part.event_ms])
            part.persisted_ms = part.event_ms

    async def _advance(self, part: Partition, event_ms: int, msg: Msg, wall: int) -> None:
        """Move event time and close every window it passes, earliest deadline first."""
        if event_ms <= part.event_ms:
            return
        part.event_ms = event_ms
        heap = part.heap
        while heap and heap[0][0] < event_ms:
            deadline, order_no = heapq.heappop(heap)
            key = order_no.encode()
            stored = self._load(key)
            if stored is None or stored.state.deadline_ms != deadline:
                continue  # stale index entry: the state moved on
            result = expire(stored.state, self.config, wall)
            if stored.state.is_open:
                self._decided(part, msg.partition, complete=False)
            await self._save(part, key, stored, result, msg)
        self._check_split(part, msg.partition)

    def _decided(self, part: Partition, partition: int, *, complete: bool) -> None:
        if complete:
            part.completed += 1
            self.metrics.inc("windows_completed", str(partition))
        else:
            part.incomplete += 1
            self.metrics.inc("windows_closed_incomplete", str(partition))

    def _check_split(self, part: Partition, partition: int) -> None:
        """Warn when nearly every window of a partition closes with documents missing."""
        if part.incomplete < part.warn_at:
            return
        part.warn_at *= 2
        decided = part.incomplete + part.completed
        if part.incomplete < _SPLIT_WARN_SHARE * decided:
            return
        log.warning(
            "partition %d: %d of the %d windows decided since the assignment closed with documents missing; "
            "are the orders, payments and waybills of partition %d all arriving? (consumer_lag, "
            "windows_closed_incomplete{partition})",
            partition,
            part.incomplete,
            decided,
            partition,
        )

    async def _step(self, part: Partition, doc: Document, msg: Msg, wall: int) -> None:
        key = doc.order_no.encode()
        stored = self._load(key)
        result = step(stored.state if stored else None, doc, self.config, part.event_ms, wall)
        if not result.changed:
            self.metrics.inc("documents_redelivered")
            return
        if stored is not None and not stored.state.is_open:
            self.metrics.inc("review_after_decision")
        elif result.state is not None and not result.state.is_open:  # decided by this document
            self._decided(part, msg.partition, complete=any(isinstance(e, Candidate) for e in result.emit))
            self._check_split(part, msg.partition)
        await self._save(part, key, stored, result, msg)

    async def _save(self, part: Partition, key: bytes, before: Stored | None, result: Step, msg: Msg) -> None:
        """Write the state (with its outbox) first, then send: a crash in between is re-sent."""
        emits = tuple(emit_of(item) for item in result.emit)
        was_open = before is not None and before.state.is_open
        if result.state is None:
            del self.states[key]
        else:
            outbox = self._in_doubt(before.outbox if before else (), msg.partition)
            if emits:
                outbox = (*outbox, OutboxEntry(msg.topic, msg.offset, emits))[-MAX_OUTBOX:]
            self.states[key] = encode_stored(Stored(result.state, outbox))
            if before is None or before.state.deadline_ms != result.state.deadline_ms:
                heapq.heappush(part.heap, (result.state.deadline_ms, result.state.order_no))
        part.open_windows += int(result.state is not None and result.state.is_open) - int(was_open)
        for emit in emits:
            await self.sender.emit(emit)

    def _in_doubt(self, outbox: Iterable[OutboxEntry], partition: int) -> tuple[OutboxEntry, ...]:
        """Entries whose source message is not yet committed (so maybe not delivered)."""
        kept = []
        for entry in outbox:
            committed = self.committed(entry.topic, partition)
            # Faust commits "next offset to read"; keep one more to be safe either way.
            if committed is None or entry.offset >= committed - 1:
                kept.append(entry)
        return tuple(kept)

    def _load(self, key: bytes) -> Stored | None:
        raw = self.states.get(key)
        return decode_stored(raw) if raw is not None else None

    async def _partition(self, number: int) -> Partition:
        part = self.partitions.get(number)
        if part is None:
            part = self.partitions[number] = await self._rebuild(number)
        return part

    async def _rebuild(self, number: int) -> Partition:
        """Scan the partition's states: deadline heap, open windows, event time, in-doubt outbox."""
        part = Partition()
        raw_clock = self.clocks.get(_clock_key(number))
        if raw_clock is not None:
            part.persisted_ms = part.event_ms = int(orjson.loads(raw_clock)[0])
        resend: list[OutboxEntry] = []
        for key, value in self.scan(number):
            try:
                stored = decode_stored(value)
            except StateCodecError as exc:
                log.error("unreadable state for key %r in partition %d: %s", key[:64], number, exc)
                continue
            state = stored.state
            part.heap.append((state.deadline_ms, state.order_no))
            part.open_windows += int(state.is_open)
            part.event_ms = max(part.event_ms, _event_lower_bound(state, self.config.retention_ms))
            resend += self._in_doubt(stored.outbox, number)
        heapq.heapify(part.heap)
        part.input_event_ms, part.input_wall_ms = part.event_ms, self.wall()
        part.last_seen = [(-1, part.input_wall_ms)] * 3
        for entry in resend:
            for emit in entry.emits:
                await self.sender.emit(emit)
                self.metrics.resent += 1
        log.info(
            "partition %d: %d states, %d open windows, event time %d, %d in-doubt entries re-sent",
            number,
            len(part.heap),
            part.open_windows,
            part.event_ms,
            len(resend),
        )
        return part


def _merge_key(item: Queued) -> tuple[int, int, int]:
    doc = item.doc
    return (doc.app_time_ms if doc is not None else -1, _RANK[doc.kind] if doc is not None else -1, item.msg.offset)


def _clock_key(partition: int) -> bytes:
    return b"%d" % partition


def _event_lower_bound(state: JoinState, retention_ms: int) -> int:
    """Event time was at least this when the state was written."""
    if not state.is_open:
        return state.deadline_ms - retention_ms
    return max((d.app_time_ms for d in state.docs if d is not None), default=0)
