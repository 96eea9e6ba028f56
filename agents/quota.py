"""The quota stage on Kafka: candidates (in the partition of their buyer) and watermarks in, final declarations out.

State per buyer (pipeline.quota.BuyerQuota) lives in its own table, co-partitioned
with the repartition topic. The core remembers every declaration id with its
verdict, so a candidate delivered twice (at-least-once between the stages, or a
replay after a crash) yields the very same declaration and counts once. The
declaration is sent on every delivery, repeats included: that is what makes a
crash lose nothing here (the state may be ahead of the committed offset).

Candidates arrive in records of one or of many (agents/batch.py: the join agent sends the
candidates of a partition together); each is decided on its own, and a record is done with
its last candidate.

Order (docs/CONTRACT.md, "Annual quota"): a buyer's declarations are counted in
(eventTime, orderNo) order. Every join partition publishes its event time as a
watermark to every partition of the candidates topic (`{"watermark": ms, "source":
p}`, after the candidates it emitted before, on the same producer); a quota partition
decides a held candidate once the smallest watermark over all join partitions has
passed its eventTime (pipeline.quota.QuotaOrder), in (eventTime, orderNo) order. A
candidate below that watermark already (late, or a redelivery) is decided at once. A
join partition that is idle (no input for CLEARANCE_IDLE_SECONDS and none unread at the
broker) says so and is left out of the minimum until it has input again, as Flink's
idle sources are: its next document is late for the quota if others have moved on.

Held candidates are not acked: acks stay in offset order per topic partition, so a
crash, a rebalance or a scale-out re-reads them from the committed offset, and the
buyer's state (changelogged) keeps every verdict already given. Watermarks are not
stored: after an assignment every join partition publishes its own again within a
tick, and until then the stage holds (a pause, never a different verdict).

Hand-over (issue 13): deciding in event-time order and acking in offset order means
candidates decided and delivered above a held one cannot be committed, and the next
owner of the partition would decide and publish them again (the same declaration: a
repeat). At a graceful hand-over (a revocation, a clean stop) the worker takes
`handover()` before its last delivery flush and, once everything is delivered, writes
one record per partition into this table's changelog (`write_handover`): the offset the
commit stops at (`base`, the first candidate not decided) and the offsets above it that
were decided and delivered, each with a CRC-32 of the message (of a record of several
candidates with some still held, the positions of those decided). The next owner reads it
with the first message of the partition, deletes it, and keeps it only when that first
message is at `base` (the group committed exactly there; a failed commit, a kill -9 after
an older record or a recreated topic start elsewhere and drop it). A candidate at a
recorded offset (and position) with the same bytes is handled: no decision, no publish. The
buyer's state is as if it was decided once, because it was: its state was changelogged
before the record was written. Without a record (kill -9, a failed flush, exactly_once)
nothing changes: the candidates are decided again, from the verdicts in the state.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.acks import Ack
from agents.outbox import emit_of
from agents.sender import Msg, Sender, Table
from pipeline.codec import (
    CANDIDATES_PREFIX,
    WATERMARK_PREFIX,
    decode_candidate,
    decode_quota,
    decode_watermarks,
    encode_quota,
    split_candidates,
)
from pipeline.config import RulesConfig
from pipeline.errors import StateCodecError
from pipeline.join import Candidate
from pipeline.quota import QuotaOrder, apply_quota

log = logging.getLogger("clearance.worker.quota")

_ALL = 2**63  # a watermark past every eventTime
_HANDOVER_KEY = b"\x00handover/%d"  # a buyer key is a normalised id number: never a NUL
_HANDOVER_WAIT_S = 10.0


def _count(value: bytes) -> int:
    """Candidates in a record (a record of many: agents/batch.py)."""
    if not value.startswith(CANDIDATES_PREFIX):
        return 1
    try:
        return len(split_candidates(value))
    except StateCodecError:
        return 1


SendTo = Callable[[str, bytes, bytes, int], Awaitable[object]]  # (topic, key, value, partition) -> its delivery


@dataclass(frozen=True, slots=True)
class HandOver:
    """What a graceful hand-over leaves for the next owner of one candidates partition:
    `base`, where the group's commit stops (the first candidate not decided), and the
    offsets above it whose candidates were decided and delivered -> CRC-32 of their bytes;
    `partial`: the records of several candidates (agents/batch.py) of which only some were
    -> (CRC-32, the positions of those in the record)."""

    topic: str
    partition: int
    base: int
    done: dict[int, int]
    partial: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)


def handover_key(partition: int) -> bytes:
    """The quota-table key of a partition's hand-over record (in that partition's store)."""
    return _HANDOVER_KEY % partition


def encode_handover(record: HandOver) -> bytes:
    body: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "base": record.base,
        "done": sorted(record.done.items()),
    }
    if record.partial:
        body["partial"] = [[offset, crc, list(at)] for offset, (crc, at) in sorted(record.partial.items())]
    return orjson.dumps(body)


def decode_handover(raw: bytes) -> HandOver:
    """bytes -> HandOver; StateCodecError when the bytes are not one."""
    try:
        obj = orjson.loads(raw)
        done = {int(offset): int(crc) for offset, crc in obj["done"]}
        partial = {int(offset): (int(crc), tuple(int(i) for i in at)) for offset, crc, at in obj.get("partial", ())}
        return HandOver(str(obj["topic"]), int(obj["partition"]), int(obj["base"]), done, partial)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StateCodecError(f"corrupt hand-over record: {type(exc).__name__}") from exc


async def write_handover(records: list[HandOver], send_to: SendTo, topic: str) -> bool:
    """Write `records` to the quota table's changelog `topic` (each in its partition) and wait
    until they are delivered; False (logged) when one is not: the next owner then decides
    those candidates again, as after a kill -9."""
    if not records:
        return True
    try:
        sends = [send_to(topic, handover_key(r.partition), encode_handover(r), r.partition) for r in records]
        await asyncio.wait_for(asyncio.gather(*sends), timeout=_HANDOVER_WAIT_S)
    except Exception as exc:  # noqa: BLE001 - only repeats follow: never fatal
        log.warning("hand-over records not delivered (%s): the next owner decides again", type(exc).__name__)
        return False
    log.info(
        "hand-over: %d decided candidate(s) above the last commit recorded for the next owner: %s",
        sum(len(r.done) for r in records),
        ", ".join(f"{r.topic}[{r.partition}]@{r.base}+{len(r.done)}" for r in records),
    )
    return True


@dataclass(slots=True)
class _Pending:
    """A received message whose ack waits for its turn (offset order) and its decisions;
    `msg` is the candidates' message (None for a watermark), for the hand-over record.
    `left`: its candidates not decided yet (a record carries one, or many: agents/batch.py).
    `decided`: the positions in the record of those decided (and sent).
    `done` is set once everything it caused was sent (so a hand-over taken while a decision
    is under way leaves that record out)."""

    ack: Ack
    offset: int
    msg: Msg | None
    done: bool = False
    left: int = 0
    decided: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Partition:
    """One candidates partition: the sources' watermarks, the held candidates, the acks in
    order, the offsets the previous owner decided (from its hand-over record) and the next
    offset to receive."""

    topic: str
    next: int
    watermarks: dict[int, tuple[int, bool]] = field(default_factory=dict)  # source -> (event ms, idle)
    held: QuotaOrder[tuple[bytes, Msg, _Pending, int]] = field(default_factory=QuotaOrder)
    acks: deque[_Pending] = field(default_factory=deque)
    handed_over: dict[int, int] = field(default_factory=dict)  # offset -> CRC-32 of the candidate
    handed_partial: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)  # -> CRC, positions


class QuotaProcessor:
    """The quota agent's logic over the buyer table."""

    def __init__(
        self,
        config: RulesConfig,
        *,
        quotas: Table,
        sender: Sender,
        sources: int | None = None,
        flowing: Callable[[], bool] = lambda: True,
    ) -> None:
        """`sources`: the number of join partitions that publish watermarks; None decides
        every candidate on arrival (no ordering: for tests of the verdicts alone). `flowing`:
        False once a rebalance has begun (Faust's flow control), see `_current`."""
        self.config = config
        self.quotas = quotas
        self.sender = sender
        self.sources = sources
        self.flowing = flowing
        self.partitions: dict[int, _Partition] = {}

    def forget_partitions(self) -> None:
        """A rebalance: held candidates are dropped unacked; whoever owns them now re-reads them."""
        self.partitions.clear()

    def handover(self) -> list[HandOver]:
        """Per partition, the candidates decided above the first one that is not (their acks
        wait behind it), and the recorded ones not reached yet. Take it before the delivery
        flush of a graceful hand-over; write it (`write_handover`) only if the flush delivered
        everything."""
        records = []
        for partition, part in self.partitions.items():
            done = {offset: crc for offset, crc in part.handed_over.items() if offset >= part.next}  # not read yet
            partial = {offset: at for offset, at in part.handed_partial.items() if offset >= part.next}
            for pending in part.acks:
                if pending.msg is None:
                    continue
                if pending.done:
                    done[pending.offset] = zlib.crc32(pending.msg.value)
                elif pending.decided:
                    partial[pending.offset] = (zlib.crc32(pending.msg.value), tuple(sorted(pending.decided)))
            if done or partial:
                base = part.acks[0].offset if part.acks else part.next
                records.append(HandOver(part.topic, partition, base, done, partial))
        return records

    @property
    def held(self) -> int:
        return sum(len(p.held) for p in self.partitions.values())

    async def handle(self, msg: Msg, ack: Ack) -> None:
        """Process one candidate or watermark; ack it in offset order once decided. Never raises."""
        part = self.partitions.get(msg.partition)
        if part is None:
            part = self.partitions[msg.partition] = _Partition(msg.topic, msg.offset)
            self._take_handover(part, msg)
        part.next = msg.offset + 1
        is_mark = msg.value.startswith(WATERMARK_PREFIX)
        pending = _Pending(ack, msg.offset, None if is_mark else msg)
        part.acks.append(pending)
        try:
            if is_mark:
                pending.done = True
                await self._watermark(part, msg)
            else:
                await self._receive(part, msg, pending)
        except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
            await self.sender.internal_error(msg, exc, "quota")
            pending.done = True
        await self._release(part, msg.partition)

    def _current(self, part: _Partition, partition: int) -> bool:
        """Whether `part` is still this stage's partition to decide in: no rebalance has begun
        (Faust suspends its flow before it revokes) or ended (`forget_partitions`) since the
        message being handled came. A decision's send can wait (a full producer, the ack
        batches); a rebalance that comes meanwhile takes the hand-over record and commits, and a
        candidate decided after that is in neither, so its next owner decides and publishes it
        again (a repeat) and its quota record lands in the changelog after the hand-over. So no
        candidate is decided and nothing acked once `part` is of the past: its owner reads them
        again (as the join does, agents/join.py `_current`)."""
        return self.flowing() and self.partitions.get(partition) is part

    def watermark(self, part: _Partition) -> int:
        """The smallest event time over the join partitions that are not idle (-1 while one is
        unknown; everything when all are idle: nothing can come before new input)."""
        if self.sources is None:
            return _ALL
        marks = part.watermarks
        if len(marks) < self.sources:
            return -1
        return min((event_ms for event_ms, idle in marks.values() if not idle), default=_ALL)

    async def _watermark(self, part: _Partition, msg: Msg) -> None:
        try:
            marks = decode_watermarks(msg.value)
        except StateCodecError as err:
            await self.sender.dead_letter(msg, str(err), "watermark", True)
            return
        for event_ms, source, idle in marks:
            if self.sources is not None and 0 <= source < self.sources:
                before = part.watermarks.get(source, (-1, False))[0]
                part.watermarks[source] = (max(before, event_ms), idle)

    def _take_handover(self, part: _Partition, first: Msg) -> None:
        """The previous owner's hand-over record of this partition, read (and deleted) with the
        first message since the assignment; kept only if that message is at its base."""
        key = handover_key(first.partition)
        try:
            raw = self.quotas.get(key)
            if raw is None:
                return
            del self.quotas[key]
            record = decode_handover(raw)
        except Exception as exc:  # noqa: BLE001 - without the record the candidates are decided again
            log.warning(
                "%s[%d]: hand-over record unreadable (%s): dropped", first.topic, first.partition, type(exc).__name__
            )
            return
        if (record.topic, record.partition, record.base) != (first.topic, first.partition, first.offset):
            log.info(
                "%s[%d]: hand-over record for @%d dropped: reading starts at @%d",
                first.topic,
                first.partition,
                record.base,
                first.offset,
            )
            return
        part.handed_over = {offset: crc for offset, crc in record.done.items() if offset >= first.offset}
        part.handed_partial = {offset: at for offset, at in record.partial.items() if offset >= first.offset}
        log.info(
            "%s[%d]: %d record(s) of candidates above @%d (and part of %d more) were decided and delivered by the "
            "previous owner: not decided again",
            first.topic,
            first.partition,
            len(part.handed_over),
            first.offset,
            len(part.handed_partial),
        )

    async def _receive(self, part: _Partition, msg: Msg, pending: _Pending) -> None:
        """A record of one candidate, or of many (`encode_candidates`): each is decided at once
        when the watermark has passed it, else held; the record is done with its last."""
        skip: tuple[int, ...] = ()
        if part.handed_over or part.handed_partial:
            crc = zlib.crc32(msg.value)
            if part.handed_over.pop(msg.offset, None) == crc:
                pending.done = True  # decided, published, its state changelogged, before the hand-over
                self.sender.metrics.inc("candidates_handed_over", "", _count(msg.value))
                return
            partial = part.handed_partial.pop(msg.offset, None)
            if partial is not None and partial[0] == crc:
                skip = partial[1]  # these of the record were, the others not
        try:
            values = split_candidates(msg.value) if msg.value.startswith(CANDIDATES_PREFIX) else [msg.value]
            candidates = [decode_candidate(value) for value in values]
        except StateCodecError as err:  # the whole record: none of it is decided
            await self.sender.dead_letter(msg, str(err), None, True)
            pending.done = True
            return
        pending.left = len(candidates)
        watermark = self.watermark(part)
        for at, (value, candidate) in enumerate(zip(values, candidates, strict=True)):
            declaration = candidate.declaration
            if at in skip:
                self.sender.metrics.inc("candidates_handed_over")
            elif declaration.event_time_ms < watermark:  # nothing earlier can still come
                if not self._current(part, msg.partition):
                    return
                try:
                    await self._decide(candidate, msg)
                except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on with the others
                    await self.sender.internal_error(msg, exc, "quota")
            else:  # held as its bytes alone, decoded again on release: decoded, ~1.6 KB more each
                part.held.hold(declaration.event_time_ms, declaration.order_no, (value, msg, pending, at))
                continue
            pending.left -= 1
            pending.decided.append(at)
        pending.done = not pending.left

    async def _release(self, part: _Partition, partition: int) -> None:
        """Decide what the watermark has passed, in order; then ack the decided prefix. Stops
        once the partition is of the past (`_current`, before each decision and the acks)."""
        for value, msg, pending, at in part.held.release(self.watermark(part)):
            if not self._current(part, partition):
                return
            try:
                await self._decide(decode_candidate(value), msg)  # it decoded on receipt
            except Exception as exc:  # noqa: BLE001 - a bug: log, dead-letter, go on
                await self.sender.internal_error(msg, exc, "quota")
            pending.left -= 1
            pending.decided.append(at)
            pending.done = not pending.left
        if not self._current(part, partition):
            return
        acks = part.acks
        while acks and acks[0].done:
            await self.sender.delivery.ack(acks.popleft().ack)

    async def _decide(self, candidate: Candidate, msg: Msg) -> None:
        key = candidate.buyer_key.encode()
        raw = self.quotas.get(key)
        result = apply_quota(decode_quota(raw) if raw is not None else None, candidate, self.config)
        if result.changed:
            self.quotas[key] = encode_quota(result.state)
        await self.sender.emit(emit_of(result.declaration))
