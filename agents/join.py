"""The join agent's logic: input and tick messages in, table writes and sends out.

Thin glue over the core. Per partition it keeps the merge queues (pipeline/merge.py)
and one `PartitionLoop` (pipeline/engine.py, the loop `clearance run` runs), whose
states live in the partition's Faust table with the outbox beside them
(`TableStates`, agents/outbox.py). What is Kafka's own stays here: per-partition event
time, the tick topic (idle advance and explicit flushes), the clock table, the broker
question before the merge passes an empty queue, and the rebuild of the deadline
index after an assignment.

Deadline index: the loop's Timeline, rebuilt from the partition's RocksDB state (one
scan) the first time a message of that partition arrives after an assignment, so it
survives restarts and rebalances without a single extra changelog write. The same
scan re-sends in-doubt outbox entries and yields a lower bound of the event time; the
clock table (written on ticks only) gives the last persisted value.

`handle` never raises: bad input is dead-lettered, a bug is logged (no personal
data), dead-lettered as INTERNAL_ERROR, and processing goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard

import orjson

from agents.acks import Ack
from agents.outbox import OutboxEntry, TableStates, decode_stored
from agents.sender import Msg, Sender, Table
from pipeline.config import RulesConfig
from pipeline.engine import PARSERS, Outcome, PartitionLoop
from pipeline.errors import InvalidRecord, StateCodecError
from pipeline.join import JoinState
from pipeline.merge import KINDS, RANK, Merge, Queued
from pipeline.records import DocKind, Document
from pipeline.timeline import Spill, Timeline
from pipeline.timeline import entry as deadline_entry

log = logging.getLogger("clearance.worker.join")

Scan = Callable[[int], Iterable[tuple[bytes, bytes]]]
Committed = Callable[[str, int], int | None]
Unread = Callable[[str, int, int], Awaitable[bool]]  # (topic, partition, asked no earlier than ms)
Wake = Callable[[int, int], None]  # (partition, wall ms): a tick to that partition then
Position = Callable[[str, int], int | None]  # (topic, partition) -> handed over up to (None: unknown)
LogEnd = Callable[[str, int], Awaitable[int]]  # (topic, partition) -> the broker's log end offset now


class Flow(Protocol):
    """Fetch an input topic partition no more (`held`) or again (agents/flow.py); False: not done."""

    def hold(self, topic: str, partition: int, held: bool) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an input message is dead-lettered: sent when its queue entry is acked, not on receipt."""

    reason: str
    field: str | None


Handle = tuple[Msg, Ack, Rejected | None]
Trace = Callable[[str, Msg, str, int, int], None]

KEY_MISMATCH = "Kafka key is not the orderNo"

# The split guard: a partition whose windows nearly all close incomplete is not joining its
# three topics (issue 10: one topic's documents were applied long before the other two's).
_SPLIT_WARN_MIN = 50
_SPLIT_WARN_SHARE = 0.8


class PartitionSpill(Spill, Protocol):
    """Where a partition's deadline index puts its full chunks (agents/spill.py)."""

    def close(self) -> None: ...


@dataclass(slots=True)
class Flush:
    """An explicit flush (a tick `{"eventTime": ms}`) that waits for the input the broker held
    when it came: `ends`, the log end offset of each input topic of its partition then (None
    until the broker has answered). `acks`: its own and those of the ticks after it, in offset
    order (a later tick's ack must not let Faust commit past it)."""

    target: int
    received_ms: int
    ends: dict[str, int] | None
    source: Msg  # the first flush tick: the outbox's source of what it emits (its ack comes last)
    acks: list[Ack] = field(default_factory=list)
    logged: bool = False


@dataclass(slots=True)
class Through:
    """A tick `{"through": ms, "ends": {topic: offset}}`: the input's producer has delivered every
    document with an appTime up to `ms`, and each input topic of this partition ended at its
    offset when it looked, after those deliveries (pipeline/merge.py)."""

    ms: int
    ends: dict[str, int]
    made_ms: int  # the tick's producer timestamp: it covers documents produced before it, no others


@dataclass(slots=True)
class Partition:
    """What the join keeps of one partition besides the table."""

    loop: PartitionLoop
    states: TableStates
    merge: Merge[Handle]
    persisted_ms: int = 0  # event time last written to the clock table
    input_event_ms: int = 0  # event time and wall clock at the last applied document (idle rule)
    input_wall_ms: int = 0
    idle: bool = False  # as its last tick found it (no input for the idle time); input clears it
    published_idle: bool = False  # whether the last watermark published said it was idle
    completed: int = 0  # windows decided complete since the assignment
    incomplete: int = 0  # windows closed with a document missing since the assignment
    warn_at: int = field(default=_SPLIT_WARN_MIN)
    spill: PartitionSpill | None = None  # the deadline index's chunks on disk, closed once it is forgotten
    flush: Flush | None = None  # an explicit flush waiting for the input that was there before it
    # The offset after the last message the join received of each input topic since the
    # assignment: what a waiting flush counts while the offset guard hands over messages it read
    # directly (its next offset is past all of them then; past holes of the log otherwise).
    received: dict[str, int] = field(default_factory=dict)
    # The input topics whose producer said they ended (a tick `{"ended": topic, "end": offset}`),
    # each with that end and the tick's producer timestamp: once received up to it, its empty queue
    # is not waited for by documents produced before the tick (pipeline/merge.py); input beyond
    # it revokes it.
    ended: dict[str, tuple[int, int]] = field(default_factory=dict)
    through: Through | None = None  # the input's producer's newest time mark (`Through`)


class _BadTick(ValueError):
    """A tick that says nothing a worker can take; `field`, the one at fault."""

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(slots=True)
class _Tick:
    """What a tick says: a flush's event time, a topic's end, the input's time mark; None each
    when absent (`{"wall": ms}` says none of them)."""

    event_ms: int | None = None
    ended: tuple[str, int] | None = None  # (topic, its end offset in this partition)
    through: tuple[int, dict[str, int]] | None = None  # (ms, ends)


def _read_tick(value: bytes, topics: Iterable[str]) -> _Tick:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _BadTick(str(exc), "eventTime") from exc
    tick = _Tick()
    if not isinstance(body, dict):
        return tick
    explicit = body.get("eventTime")
    if explicit is not None:
        if not _is_int(explicit):
            raise _BadTick("eventTime is not an integer", "eventTime")
        tick.event_ms = explicit
    ended = body.get("ended")
    if ended is not None:
        if ended not in topics:
            raise _BadTick("ended names no input topic of this worker", "ended")
        end = body.get("end")
        if not _is_offset(end):
            raise _BadTick("end is not an offset", "end")
        tick.ended = (ended, end)
    through = body.get("through")
    if through is not None:
        ends = body.get("ends")
        if not _is_int(through):
            raise _BadTick("through is not an integer", "through")
        if not isinstance(ends, dict) or set(ends) != set(topics) or not all(map(_is_offset, ends.values())):
            raise _BadTick("ends is not an offset for each input topic", "ends")
        tick.through = (through, ends)
    return tick


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_offset(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
        publish_every_ms: int | None = 1000,
        flow: Flow | None = None,
        merge_buffer: int = 0,
        spills: Callable[[int], PartitionSpill] | None = None,
        wake: Wake | None = None,
        position: Position | None = None,
        log_end: LogEnd | None = None,
        flowing: Callable[[], bool] = lambda: True,
    ) -> None:
        """`flow` and `merge_buffer` (> 0) bound each merge queue: a topic partition whose queue
        holds `merge_buffer` documents is paused until the queue has drained to half of it.
        `spills` opens a partition's spill for its deadline index (none: kept in memory).
        `wake(partition, wall_ms)` has a tick sent to a partition at the moment the merge's
        wait ends (none: the next input or the next regular tick looks again).
        `position` (the offset up to which the offset guard has handed a topic partition over,
        holes of the log included; None while it hands over messages it read directly) and
        `log_end` (the broker's) hold an explicit flush until the input it came after is
        received (none: a flush applies to what has been received, as before: for tests of the
        rest). `flowing`: False from the moment a rebalance begins (Faust's flow control, suspended
        before the partitions are revoked) until the next assignment has recovered: nothing more
        is applied meanwhile (`_current`)."""
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
        self.publish_every_ms = publish_every_ms
        self._published_wall_ms = 0  # when the owned partitions' event times were last published
        self.flow = flow if merge_buffer > 0 else None
        self.merge_buffer = merge_buffer
        self.topics = {RANK[kind]: topic for topic, kind in kinds.items()}
        self.sender = sender
        self.delivery = sender.delivery
        self.metrics = sender.metrics
        self.wall = wall
        self.partitions: dict[int, Partition] = {}
        self.spills = spills
        self.wake = wake
        self.position = position
        self.log_end = log_end
        self.flowing = flowing
        self._retired: list[PartitionSpill] = []  # spills of forgotten partitions, to close
        self.trace: Trace | None = None

    def forget_partitions(self) -> None:
        """A rebalance: rebuild every index on next use (another worker may have moved on).

        Buffered documents are dropped unacked: Faust seeks to the committed offsets
        after the rebalance (and the offset check refills what it skips), so whoever
        owns the partition now reads them again. The holds of full queues are forgotten
        too: a rebalance starts every partition unpaused in aiokafka (agents/flow.py).
        Their spills are closed when the next message comes: a message being handled (the
        rebalance came while it awaited) may still use its partition's index."""
        self._retired += [part.spill for part in self.partitions.values() if part.spill is not None]
        self.partitions.clear()

    def _close_retired(self) -> None:
        """Close the forgotten partitions' spills: messages come one at a time (concurrency
        1), so none is in use when the next message comes. A failure is logged, never the
        message's: the spill holds nothing of record."""
        while self._retired:
            spill = self._retired.pop()
            try:
                spill.close()
            except Exception:
                log.exception("closing a forgotten partition's deadline spill failed")

    @property
    def paused(self) -> int:
        """Input topic partitions held (not fetched) because their merge queue is full."""
        return sum(len(p.merge.paused) for p in self.partitions.values())

    @property
    def buffered(self) -> int:
        return sum(len(p.merge) for p in self.partitions.values())

    @property
    def open_windows(self) -> int:
        return sum(p.loop.open_windows for p in self.partitions.values())

    async def handle(self, msg: Msg, ack: Ack) -> None:
        """Take one message of an input or tick topic; `ack` it once applied. Never raises.

        Within one topic partition messages are acked strictly in offset order (a
        dead letter waits in its queue behind earlier documents): Faust commits the
        highest contiguous acked offset and tolerates a one-message gap at the head,
        so acking out of order could commit past a message not yet applied."""
        if self._retired:
            self._close_retired()
        if msg.topic == self.tick_topic:
            try:
                await self._tick(msg)
            except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
                await self.sender.internal_error(msg, exc, "join")
            await self._tick_done(msg.partition, ack)
            return
        try:
            part = await self._partition(msg.partition)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "join")
            await self.delivery.ack(ack)
            return
        part.received[msg.topic] = msg.offset + 1
        rejected: Rejected | None = None
        try:
            doc, rejected = self._receive(msg)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "join")
            doc = None
        wall = self.wall()
        stamp = msg.timestamp_ms
        sent = stamp if stamp is not None and stamp <= wall else wall
        if stamp is not None:
            self.metrics.observe_input_wait(wall - sent)
        part.merge.push(RANK[self.kinds[msg.topic]], Queued(doc, msg.offset, wall, (msg, ack, rejected), sent))
        await self._release(part, msg.partition, wall, drain=False)
        if part.flush is not None:
            await self._try_flush(part, msg.partition, ask=False)
        if self.flow is not None:
            self._bound(part, msg.partition)
        # Also on input, not only on ticks (under a backlog the ticks queue behind the input);
        # at once after an idle watermark, so the quota stage waits for this partition again.
        if self._publish_due(wall, now=part.published_idle):
            await self._publish(part, msg.partition, wall, idle=False, now=part.published_idle)
        else:  # what `_publish` does when it is not due, without a coroutine per message
            part.idle = False

    def _receive(self, msg: Msg) -> tuple[Document | None, Rejected | None]:
        """Parse a document, or say why it is dead-lettered.

        The dead letter is sent when the message's queue entry is acked (`_done`), in its
        turn: sent on receipt, it was repeated by the next owner when a graceful hand-over
        came while the entry still waited behind earlier documents of its queue (the ack,
        hence the commit, had not passed it)."""
        self.metrics.inc("documents_in", msg.topic)
        try:
            doc = PARSERS[self.kinds[msg.topic]](msg.value)
        except InvalidRecord as err:
            return None, Rejected(err.reason, err.field)
        if msg.key != doc.order_no.encode():
            return None, Rejected(KEY_MISMATCH, "orderNo")
        return doc, None

    async def _done(self, handle: Handle) -> None:
        """A queue entry leaves: its dead letter, if it is one, then its ack (which waits for it)."""
        msg, ack, rejected = handle
        if rejected is not None:
            await self.sender.dead_letter(msg, rejected.reason, rejected.field, False)
        await self.delivery.ack(ack)

    async def _release(self, part: Partition, partition: int, wall: int, *, drain: bool) -> None:
        """Apply queued documents in merge order while no queue can still receive an earlier one.
        Stops once the partition was revoked (`_current`, checked once per document, after every
        await of the loop before it): what is still queued is read again by its owner."""
        merge = part.merge
        while True:
            for done in merge.done():
                await self._done(done.handle)
            head = merge.head()
            if head is None:
                return
            rank, item = head
            if not drain and not await self._may_pass(part, partition, wall, item):
                return
            if not self._current(part, partition):
                return
            merge.pop(rank)
            if item.doc is not None:
                msg = item.handle[0]
                try:
                    await self._apply(part, item.doc, msg, wall)
                except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
                    await self.sender.internal_error(msg, exc, "join")
            await self._done(item.handle)

    def _bound(self, part: Partition, partition: int, *, again: bool = False) -> None:
        """Hold the topic partitions whose queue is full, release those drained (pipeline/merge.py);
        `again` (a tick): tell the consumer every topic partition's state again.

        Never the one the merge waits for: it waits only for an empty queue, and an empty
        queue is never held (a held one is released at half the bound). Told again every
        tick, a hold or release that crossed a rebalance is put right."""
        flow = self.flow
        if flow is None:
            return
        merge = part.merge
        hold, release = merge.flow(self.merge_buffer)
        try:
            for rank in hold:
                if flow.hold(self.topics[rank], partition, True):
                    merge.paused.add(rank)
                    self.metrics.inc("input_paused", self.topics[rank])
            for rank in release:
                if flow.hold(self.topics[rank], partition, False):
                    merge.paused.discard(rank)
            if again:
                for rank, topic in self.topics.items():
                    flow.hold(topic, partition, rank in merge.paused)
        except Exception:  # a bug: the queue stays unbounded until the next try; never stop the join
            log.exception("partition %d: holding or releasing an input failed", partition)

    def unpaused(self, partition: int) -> list[str]:
        """The input topics of `partition` the worker has not paused (pipeline/merge.py's bound):
        those whose undelivered tail may be read directly (agents/sequence.py `stalled`)."""
        part = self.partitions.get(partition)
        paused = part.merge.paused if part is not None else set()
        return [topic for rank, topic in sorted(self.topics.items()) if rank not in paused]

    async def _may_pass(self, part: Partition, partition: int, wall: int, head: Queued[Handle]) -> bool:
        """The merge rule's second half: the broker holds nothing unread of the empty queues
        (of those its producer's ticks do not cover: `_ended`, `_covered`)."""
        merge = part.merge
        q0, q1, q2 = merge.queues
        if q0 and q1 and q2:
            return True  # nothing to pass: the common case under traffic, once per document
        covered: set[int] | tuple[()] = ()
        if part.ended or part.through is not None:  # the producer's watermarks, when it sends them
            covered = self._ended(part, partition, head)
            if part.through is not None:
                covered |= self._covered(part.through, part, partition, head)
        passing = merge.passing(wall, head, covered)
        if passing is None:
            if self.wake is not None:
                self.wake(partition, merge.ready_ms(head, covered))
            return False
        for rank in passing:
            if await self.unread(self.topics[rank], partition, head.received_ms):
                return False
        return True

    def _ended(self, part: Partition, partition: int, head: Queued[Handle]) -> set[int]:
        """The ranks of the topics said to have ended whose input is received up to that end (the
        guard's next offset, or what came while it hands over), for a head produced before that
        was said (a later producer's documents are not covered); a topic received beyond its end
        has input again and is dropped from `part.ended`."""
        ranks = set()
        for topic, (end, made_ms) in list(part.ended.items()):
            at = self._received(topic, part, partition)
            if at is None or at < end:
                continue
            if at > end:
                del part.ended[topic]
                continue
            if 0 <= head.sent_ms <= made_ms:
                ranks.add(RANK[self.kinds[topic]])
        return ranks

    def _received(self, topic: str, part: Partition, partition: int) -> int | None:
        """The offset up to which `topic` of `partition` is received: the guard's next offset (past
        holes of the log), or while it hands over what it read directly, what came."""
        at = self.position(topic, partition) if self.position is not None else None
        return part.received.get(topic) if at is None else at

    def _covered(self, through: Through, part: Partition, partition: int, head: Queued[Handle]) -> set[int]:
        """The ranks whose empty queue cannot still get a document before `head` by the input's
        time mark: none when the head's appTime is past the mark, or the head was produced after
        the mark (by another producer, a later replay: the mark says nothing of its documents);
        else those whose topic is received up to the mark's end (every document up to the mark
        is below it)."""
        doc = head.doc
        if doc is None or doc.app_time_ms > through.ms or not 0 <= head.sent_ms <= through.made_ms:
            return set()
        ranks = set()
        for topic, end in through.ends.items():
            at = self._received(topic, part, partition)
            if at is not None and at >= end:
                ranks.add(RANK[self.kinds[topic]])
        return ranks

    async def _any_unread(self, partition: int, since_ms: int) -> bool:
        for topic in self.topics.values():
            if await self.unread(topic, partition, since_ms):
                return True
        return False

    async def _apply(self, part: Partition, doc: Document, msg: Msg, wall: int) -> None:
        if self.trace is not None:
            self.trace("apply", msg, doc.order_no, doc.app_time_ms, part.loop.event_ms)
        part.states.source = msg
        outcome = Outcome()
        part.loop.apply(doc, wall, outcome, msg.timestamp_ms)
        part.input_event_ms, part.input_wall_ms = part.loop.event_ms, wall
        await self._emit(part, msg.partition, outcome)

    async def _tick(self, msg: Msg) -> None:
        """A tick: `{"wall": ms}` from a worker's timer (the merge's waits, the idle rule),
        `{"eventTime": ms}`, an explicit flush (the end of a replay), `{"ended": topic, "end":
        offset}`, the producer of an input topic saying that it writes nothing more of it, and
        that this partition of it ended at `offset`, or `{"through": ms, "ends": {topic: offset}}`,
        the input's producer saying that every document up to that appTime is delivered, below
        those ends (pipeline/merge.py)."""
        self.metrics.last_tick = self.wall() / 1000.0
        try:
            tick = _read_tick(msg.value, self.kinds)
        except _BadTick as bad:
            await self.sender.dead_letter(msg, f"invalid tick: {bad}", bad.field, False)
            return
        explicit = tick.event_ms
        part = await self._partition(msg.partition)
        made_ms = msg.timestamp_ms if msg.timestamp_ms is not None else -1  # unknown: it covers nothing
        if tick.ended is not None:
            topic, end = tick.ended
            part.ended[topic] = (end, made_ms)
        if tick.through is not None:  # the newest (ticks of a partition come in the order sent)
            part.through = Through(*tick.through, made_ms)
        wall = self.wall()
        if explicit is not None:
            await self._hold_flush(part, msg, explicit, wall)
        await self._release(part, msg.partition, wall, drain=False)
        if not self._current(part, msg.partition):
            return  # revoked while the broker was asked: the partition's owner reads this tick again
        # the timer's ticks tell the consumer every hold again; a watermark (five a second) need not
        self._bound(part, msg.partition, again=tick.through is None and tick.ended is None)
        # ends still unknown are asked again on the next tick (a flush has just asked for its own)
        if part.flush is not None and await self._try_flush(part, msg.partition, ask=explicit is None):
            return
        if not self._current(part, msg.partition):
            return
        # Idle: nothing queued, no input for CLEARANCE_IDLE_SECONDS, and the broker holds nothing
        # unread of the partition (a partition the consumer has not fetched for a while, a
        # backlog elsewhere, is late, not idle). Its event time then follows the wall clock
        # (windows close) and its watermark says idle: it holds no one back at the quota stage
        # until it has input again (its next documents are late for the quota, as Flink's idle
        # sources are; the long idle time keeps that to real silences).
        idle = (
            part.flush is None
            and not len(part.merge)
            and wall - part.input_wall_ms > self.idle_ms
            and not await self._any_unread(msg.partition, part.input_wall_ms + self.idle_ms)
        )
        target = part.input_event_ms + (wall - part.input_wall_ms) if idle else part.loop.event_ms
        if not await self._advance(part, msg, target, wall):
            return
        await self._publish(part, msg.partition, wall, idle=idle, now=False)

    async def _hold_flush(self, part: Partition, msg: Msg, target: int, wall: int) -> None:
        """Take an explicit flush: it applies once everything its partition's input topics held
        at the broker when it came has been received (`_try_flush`), so that a flush sent after
        a replay closes the windows the replay's documents leave open, however far behind the
        worker is. Faust hands the tick topic over as soon as it is fetched, ahead of a backlog
        of input: applied at once, it closed windows whose documents were still unread, and
        decided them on the documents that happened to be received (one bench run in ~65, 4
        declarations). A second flush before the first applies joins it: the later event time,
        the later ends."""
        ends = await self._ends(msg.partition)
        flush = part.flush
        if flush is None:
            part.flush = Flush(target, wall, ends, msg)
            return
        flush.target = max(flush.target, target)
        if flush.ends is not None and ends is not None:
            flush.ends = {topic: max(end, flush.ends.get(topic, 0)) for topic, end in ends.items()}
        else:
            flush.ends = None  # asked again on the next tick

    async def _ends(self, partition: int) -> dict[str, int] | None:
        """The broker's log end offset of each input topic of `partition` now; None when one is not
        known (asked again on the next tick); {} without a broker to ask (the flush applies at once)."""
        log_end = self.log_end
        if log_end is None or self.position is None:
            return {}
        ends: dict[str, int] = {}
        for topic in self.topics.values():
            try:
                ends[topic] = await log_end(topic, partition)
            except Exception as exc:  # noqa: BLE001 - broker unreachable: the flush waits, the ticks retry
                log.warning("%s[%d]: log end unknown (%s); the flush waits", topic, partition, type(exc).__name__)
                return None
        return ends

    async def _try_flush(self, part: Partition, partition: int, *, ask: bool) -> bool:
        """Apply the partition's waiting flush once its input up to the flush's ends is received:
        every queued document first, whatever the merge would wait for, then event time moves to
        the flush's; then its acks go. `ask`: the broker may be asked for ends still unknown (on
        ticks, not on every document). True when it was applied."""
        flush = part.flush
        if flush is None:
            return False
        if flush.ends is None:
            if not ask:
                return False
            flush.ends = await self._ends(partition)
            if flush.ends is None or not self._current(part, partition):
                return False
        behind = {}
        if self.position is not None:
            for topic, end in flush.ends.items():
                at = self._received(topic, part, partition)
                if at is None or at < end:
                    behind[topic] = end - (at or 0)
        wall = self.wall()
        if behind:
            if not flush.logged:
                flush.logged = True
                self.metrics.inc("flushes_waited")
                log.info(
                    "partition %d: the flush to event time %d waits for the input that came before it: %s",
                    partition,
                    flush.target,
                    ", ".join(f"{topic} {left:,} to receive" for topic, left in behind.items()),
                )
            return False
        part.flush = None
        await self._release(part, partition, wall, drain=True)
        if not self._current(part, partition) or not await self._advance(part, flush.source, flush.target, wall):
            return True  # revoked meanwhile: its acks are dropped, the next owner reads it again
        await self._publish(part, partition, wall, idle=False, now=True)
        for ack in flush.acks:
            await self.delivery.ack(ack)
        if flush.logged:
            log.info(
                "partition %d: flush to event time %d applied after %d ms",
                partition,
                flush.target,
                wall - flush.received_ms,
            )
        return True

    def _current(self, part: Partition, partition: int) -> bool:
        """Whether `part` is still the join's partition to apply to: no rebalance has begun (Faust
        suspends its flow before it revokes, `flowing`) or ended (`forget_partitions`) since the
        message being handled came. A rebalance that comes while a message awaits (the broker's
        answer, a send) leaves its handling with a partition of the past, and nothing more is
        applied to it. Applied after the revocation had begun, a flush tick that had asked the
        broker for its ends drained the queued documents and forgot every state after the hand-over
        had sealed the last acks: those documents were not committed, yet their states were
        forgotten in the changelog, and the new owner read them again as orders of their own (10
        declarations the embedded runner does not make). The next owner reads all that was not
        applied."""
        return self.flowing() and self.partitions.get(partition) is part

    async def _tick_done(self, partition: int, ack: Ack) -> None:
        """A tick's ack: held behind a waiting flush of its partition, else released."""
        part = self.partitions.get(partition)
        if part is not None and part.flush is not None:
            part.flush.acks.append(ack)
        else:
            await self.delivery.ack(ack)

    async def _advance(self, part: Partition, msg: Msg, target: int, wall: int) -> bool:
        """Move the partition's event time to `target` (a flush, the idle rule), closing every window
        it passes, and persist it in the clock table. False when the partition was revoked meanwhile."""
        if target > part.loop.event_ms:
            if self.trace is not None:
                self.trace("advance", msg, "", target, part.loop.event_ms)
            part.states.source = msg
            while True:  # a flush past the retention forgets thousands: their records go in bounded batches
                outcome = Outcome()
                more = part.loop.advance(target, wall, outcome, _TICK_EXPIRIES)
                await self._emit(part, msg.partition, outcome)
                if not more:
                    break
                await self.sender.delivery.checkpoint()
                if not self._current(part, msg.partition):  # revoked meanwhile: the next owner goes on
                    return False
        if part.loop.event_ms > part.persisted_ms:
            self.clocks[_clock_key(msg.partition)] = orjson.dumps([part.loop.event_ms])
            part.persisted_ms = part.loop.event_ms
        return True

    async def _publish(self, part: Partition, partition: int, wall: int, *, idle: bool, now: bool) -> None:
        """Note the partition's idle state; publish the event time of every partition this
        worker owns as one watermark record per candidates partition, at most once per
        `publish_every_ms` (at once when `now`).

        The quota stage orders candidates by them (agents/quota.py); a record is sent after
        every candidate emitted before it, on the same producer. An idle partition says so:
        it holds no one back until it has input again. One record for all the worker's
        partitions: a record per partition made P x P records every interval (1,440/s at 12
        partitions; 17,000 of the 37,000 records on the candidates topic in a paced run)."""
        part.idle = idle
        if not self._publish_due(wall, now=now):
            return
        owned = list(self.partitions.items())
        await self.sender.watermarks([(p.loop.event_ms, number, p.idle) for number, p in owned])
        self._published_wall_ms = wall
        for _, p in owned:
            p.published_idle = p.idle

    def _publish_due(self, wall: int, *, now: bool) -> bool:
        """Whether `_publish` publishes: never without an interval, else `now` or once it has passed."""
        every = self.publish_every_ms
        return every is not None and (now or wall - self._published_wall_ms >= every)

    async def _emit(self, part: Partition, partition: int, outcome: Outcome) -> None:
        """Send what the loop emitted (its states are written already) and count it."""
        for emit in part.states.take():  # outcome.emits, encoded once by TableStates.save
            await self.sender.emit(emit)
        metrics = self.metrics
        if outcome.redelivered:
            metrics.inc("documents_redelivered", by=outcome.redelivered)
        if outcome.after_decision:
            metrics.inc("review_after_decision", by=outcome.after_decision)
        if outcome.completed:
            part.completed += outcome.completed
            metrics.inc("windows_completed", str(partition), outcome.completed)
        if outcome.incomplete:
            part.incomplete += outcome.incomplete
            metrics.inc("windows_closed_incomplete", str(partition), outcome.incomplete)
            self._check_split(part, partition)

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

    async def _partition(self, number: int) -> Partition:
        part = self.partitions.get(number)
        if part is None:
            part = self.partitions[number] = await self._rebuild(number)
        return part

    async def _rebuild(self, number: int) -> Partition:
        """Scan the partition's states: deadline index, open windows, event time, in-doubt outbox."""
        event_ms = persisted_ms = 0
        raw_clock = self.clocks.get(_clock_key(number))
        if raw_clock is not None:
            event_ms = persisted_ms = int(orjson.loads(raw_clock)[0])
        entries: list[bytes] = []
        windows: set[str] = set()
        resend: list[OutboxEntry] = []
        states = TableStates(self.states, lambda topic: self.committed(topic, number))
        for key, value in self.scan(number):
            try:
                stored = decode_stored(value)
            except StateCodecError as exc:
                log.error("unreadable state for key %r in partition %d: %s", key[:64], number, exc)
                continue
            state = stored.state
            entries.append(deadline_entry(state.deadline_ms, state.order_no, state.is_open))
            if state.is_open:
                windows.add(state.order_no)
            event_ms = max(event_ms, _event_lower_bound(state, self.config.retention_ms))
            resend += states.in_doubt(stored.outbox)
        wall = self.wall()
        spill = self.spills(number) if self.spills is not None else None
        loop = PartitionLoop(self.config, states, Timeline.from_entries(event_ms, entries, spill), windows)
        part = Partition(loop, states, Merge(self.merge_wait_ms, wall), persisted_ms, event_ms, wall, spill=spill)
        for entry in resend:
            for emit in entry.emits:
                await self.sender.emit(emit)
                self.metrics.resent += 1
        log.info(
            "partition %d: %d states, %d open windows, event time %d, %d in-doubt entries re-sent",
            number,
            len(entries),
            len(windows),
            event_ms,
            len(resend),
        )
        return part


_TICK_EXPIRIES = 2000  # deadlines a tick closes between two checkpoints of the sends


def kind_of_topics(topics: dict[DocKind, str]) -> dict[str, DocKind]:
    """topic -> kind, from the settings' kind -> topic map."""
    return {topic: kind for kind, topic in topics.items() if kind in KINDS}


def _clock_key(partition: int) -> bytes:
    return b"%d" % partition


def _event_lower_bound(state: JoinState, retention_ms: int) -> int:
    """Event time was at least this when the state was written."""
    if not state.is_open:
        return state.deadline_ms - retention_ms
    return max((d.app_time_ms for d in state.docs if d is not None), default=0)
