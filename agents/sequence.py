"""Every input offset handled once, in order: the agents' guard against messages Faust skips.

Measured (crash test, Faust 0.15.3 with aiokafka): after a (re)assignment the first
message a worker got of almost every topic partition was the committed offset + 6 or
7. Faust's recovery resumes the stream partitions before it seeks them to the committed
offsets, so the first fetched messages race the seek and the flow-control queues; the
ones that lose are never delivered, while Faust's read offset has moved past them. Its
commit logic then treats the hole as a gap (or, with no committed offset yet, does not
look) and commits past it. Whenever the worker that died had not applied those
documents, they were lost: about one crash-test run in three lost 5 to 60 declarations.

So each agent tracks, per topic partition, the next offset it must handle, starting
at the group's committed offset (or the log start when none) after every assignment:

* offset == next: handle it.
* offset <  next: already handled (a redelivery after Faust's own seek): drop it, unacked,
  so acks stay in offset order.
* offset >  next: the hole [next, offset) is read with a plain consumer and handled
  first, in order. A hole that holds no message (transaction markers, retention) reads
  as empty and costs one fetch.

The agents' acks are strictly in offset order per topic partition (agents/acks.py),
so Faust's commit can no longer pass a message this worker has not handled.

A hole is seen when a later message arrives. At the end of the input none may: when
the messages that lost the race were the last ones of their topic partition (two
processes starting on a backlog: the first committed most of it, then handed half its
partitions to the second; the other half's last payment and waybills were never
delivered again), the merge waited for them for good and the partition's commits
stopped short (2 of ~15 runs of the two-process backlog test, 4 December). So on each
tick of a partition the join also asks `stalled`: a topic partition whose next offset
has not moved for `stall_ms` while the consumer's high watermark is beyond it has its
tail read directly, as a hole is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from agents.metrics import Metrics
from agents.sender import Msg
from clearance.clock import wall_ms

log = logging.getLogger("clearance.worker")

TopicPartition = tuple[str, int]
StartOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]
ReadRange = Callable[[str, int, int, int], Awaitable[list[Msg]]]


class Sequencer:
    """The next offset to handle per topic partition, and the refill of holes."""

    def __init__(
        self,
        *,
        start_offsets: StartOffsets,
        read_range: ReadRange,
        assigned: Callable[[], Iterable[TopicPartition]],
        metrics: Metrics,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._clock = clock
        self._since: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (next offset, when first seen unmoved)
        self._start_offsets = start_offsets
        self._read_range = read_range
        self._assigned = assigned
        self._metrics = metrics
        self._next: dict[TopicPartition, int] = {}
        self._starts: dict[TopicPartition, int] = {}  # the group's committed offset at the assignment
        self._generation = 0
        # Set by the drain (agents/stream.py) while it hands messages read directly to the
        # handler one by one: the next offsets are past all of them already.
        self.handing_over = False

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The next offset to receive of a topic partition; None before the first message since the assignment."""
        return self._next.get((topic, partition))

    def handed(self, topic: str, partition: int) -> int | None:
        """The offset up to which the handler has been handed a topic partition's messages (holes
        of the log included): the next offset, except while messages read directly are being
        handed over (None then, as before the first message since the assignment)."""
        if self.handing_over:
            return None
        return self._next.get((topic, partition))

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset of a topic partition when it was assigned (the log start
        when none was committed); None before the first message since the assignment."""
        return self._starts.get((topic, partition))

    def reset(self) -> None:
        """A rebalance: start again from the committed offsets."""
        self._next.clear()
        self._starts.clear()
        self._since.clear()
        self._generation += 1

    def in_turn(self, msg: Msg) -> bool:
        """The common case, without a coroutine: `msg` is the very next offset expected of its
        topic partition (it is then admitted, with nothing before it). False: ask `admit`."""
        key = (msg.topic, msg.partition)
        if self._next.get(key) != msg.offset:
            return False
        self._next[key] = msg.offset + 1
        return True

    async def admit(self, msg: Msg) -> tuple[list[Msg], bool]:
        """(messages to handle before `msg`, whether to handle `msg` itself)."""
        key = (msg.topic, msg.partition)
        expected = self._next.get(key)
        if expected is None:
            expected = await self._start(key)
            if expected is None:  # a rebalance came in between: Faust re-delivers from the committed offset
                return [], False
        if msg.offset < expected:
            self._metrics.inc("input_redelivered_dropped", msg.topic)
            return [], False
        missing: list[Msg] = []
        if msg.offset > expected:
            refilled = await self._refill(msg.topic, msg.partition, expected, msg.offset, "")
            if refilled is None:
                return [], False
            missing = refilled
        self._next[key] = msg.offset + 1
        return missing, True

    async def _refill(self, topic: str, partition: int, start: int, end: int, how_long: str) -> list[Msg] | None:
        """Read offsets [start, end) directly, log and count them; None when a rebalance came meanwhile."""
        generation = self._generation
        missing = await self._read_range(topic, partition, start, end)
        if generation != self._generation:
            return None
        if missing:
            log.warning(
                "%s[%d]: offsets %d..%d were not delivered by the consumer%s; read %d message(s) of them directly",
                topic,
                partition,
                start,
                end - 1,
                how_long,
                len(missing),
            )
            self._metrics.inc("input_gap_messages_refilled", topic, len(missing))
        else:  # transaction markers or deleted records: a hole of the log, not of the delivery
            log.debug("%s[%d]: offsets %d..%d hold no message", topic, partition, start, end - 1)
        return missing

    async def stalled(
        self,
        partition: int,
        topics: Iterable[str],
        end_of: Callable[[str, int], int | None],
        *,
        stall_ms: int,
        limit: int,
    ) -> list[Msg]:
        """The tails the consumer did not deliver: for each of `partition`'s `topics` whose next
        offset has not moved for `stall_ms` while `end_of` (the consumer's high watermark; None:
        unknown) is beyond it, up to `limit` messages read directly, to handle now, in order,
        before the message that asked. Faust may still deliver them: they are then below the next
        offset and dropped, as any redelivery. Leave out topic partitions the worker paused."""
        out: list[Msg] = []
        now = self._clock()
        for topic in topics:
            key = (topic, partition)
            expected = self._next.get(key)
            if expected is None:
                continue  # nothing known since the assignment: the first message starts every partition
            seen = self._since.get(key)
            if seen is None or seen[0] != expected:
                self._since[key] = (expected, now)
                continue
            end = end_of(topic, partition)
            if end is None or end <= expected or now - seen[1] < stall_ms:
                continue
            upto = min(end, expected + limit)
            missing = await self._refill(topic, partition, expected, upto, f" for {now - seen[1]} ms")
            if missing is None or self._next.get(key) != expected:
                continue  # a rebalance, or the consumer delivered meanwhile
            self._next[key] = upto
            self._since[key] = (upto, now)
            out += missing
        return out

    async def _start(self, key: TopicPartition) -> int | None:
        """The committed offsets (log start when none) of `key` and every other unknown assigned partition."""
        generation = self._generation
        wanted = sorted({key, *(tp for tp in self._assigned() if tp not in self._next)})
        starts = await self._start_offsets(wanted)
        if generation != self._generation:
            return None
        for tp in wanted:
            self._next.setdefault(tp, starts[tp])  # a KeyError is a failed lookup: the caller's to handle
            self._starts.setdefault(tp, starts[tp])
        log.info("start offsets after the assignment: %s", ", ".join(f"{t}[{p}]@{starts[t, p]}" for t, p in wanted))
        return self._next[key]
