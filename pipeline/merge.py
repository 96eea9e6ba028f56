"""Which queued document of a partition goes next: the merge by appTime.

The embedded runner applies a trace's documents in (appTime, kind, line) order. A
Kafka worker receives the three input topics of a partition in whatever chunks the
consumer fetched, so one topic can run thousands of messages ahead of another (a
backlog, a restart), and a late document would then close windows whose other
documents are still unread. So, like Kafka Streams' PartitionGroup, a partition keeps
one queue per input topic and applies the head with the smallest (appTime, kind rank,
offset), and only while no empty queue can still receive an earlier document.

When may an empty queue be passed over? The rule has two parts; this module decides
the first, the shell the second (it needs the broker):

1. the queue's topic has been silent for `silent_ms` (nothing received for a while;
   after an assignment every queue counts as silent since the assignment), and the head
   is `silent_ms` old by its producer's timestamp (its receipt, when that is earlier or
   unknown), so that whatever was produced before it, on any topic, had that long to
   reach the broker; and
2. the broker holds nothing of that topic partition that was not received yet, asked
   after the head arrived. The consumer's own high watermark is not enough: it comes
   from its last fetch of that partition, which can be seconds old (issue 10).

An empty queue that cannot still receive a document before the head is passed over at once,
by neither rule (the shell names those queues, `covered`), because its producer said so:
- its topic has *ended*: a tick `{"ended": topic, "end": offset}` says that its producer writes
  nothing more of it and this partition of it ends at `offset`, and the shell has received up
  to there (input beyond that end revokes it); or
- the producer's time mark covers the head: a tick `{"through": ms, "ends": {...}}` says that
  every document with an appTime up to `ms` was delivered, each input topic's partition then
  ending at its offset in `ends`; the head's appTime is at most `ms`, and the shell has
  received that topic up to its end there.
Either covers only heads produced before the tick. `clearance replay --watermarks` sends both,
as the one producer of its input topics. A finished
trace's topics end at different times (the peak-hour trace's payments end 5 minutes of appTime
before its orders, 1.4 s of a 30 s replay), and every later document of a partition waited for
the silence rule; and wherever a partition's topics are sparse, a document waited for the next
document of each other topic, or for silence. Without such ticks the rules are as above.

A dead-lettered message waits in its queue too (`doc` None), so that acks stay in
offset order within a topic partition; at a head it is done at once.

A queue is bounded as Kafka Streams bounds its partition queues
(`buffered.records.per.partition`): under a backlog one topic runs far ahead of another
(issue 13: ~78,000 payments and waybills waited for their orders, ~5 KB each), so a
queue that reaches `bound` documents has its topic partition paused (nothing more is
fetched of it) until it has drained to half of that (`Merge.flow`). The merge only
ever waits for an empty queue, and an empty queue is never paused (a paused one is
resumed before it is empty), so a pause cannot stop the merge: the queue it waits for
keeps being fetched, and while every queue holds a document the head is applied.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.records import DocKind, Document

T = TypeVar("T")

RANK: dict[DocKind, int] = {"order": 0, "payment": 1, "waybill": 2}
KINDS: tuple[DocKind, ...] = ("order", "payment", "waybill")


@dataclass(slots=True)
class Queued(Generic[T]):
    """A received message waiting for its turn: its document (None: dead-lettered) and the shell's handle."""

    doc: Document | None
    offset: int
    received_ms: int
    handle: T
    sent_ms: int = -1  # the producer's timestamp, at most `received_ms`; -1: unknown (the receipt counts)


def merge_key(item: Queued[T], rank: int) -> tuple[int, int, int]:
    """(appTime, kind rank, offset): the embedded runner's order within one partition."""
    doc = item.doc
    return (doc.app_time_ms if doc is not None else -1, rank, item.offset)


class Merge(Generic[T]):
    """The three queues of one partition (orders, payments, waybills) and the merge rule."""

    __slots__ = ("silent_ms", "queues", "last_seen_ms", "paused")

    def __init__(self, silent_ms: int, now_ms: int) -> None:
        self.silent_ms = silent_ms
        self.queues: tuple[deque[Queued[T]], ...] = (deque(), deque(), deque())
        self.last_seen_ms = [now_ms, now_ms, now_ms]  # when each topic last delivered something
        self.paused: set[int] = set()  # ranks whose topic partition the shell has paused

    def push(self, rank: int, item: Queued[T]) -> None:
        """Queue a received message (in offset order within its topic)."""
        self.queues[rank].append(item)
        self.last_seen_ms[rank] = max(self.last_seen_ms[rank], item.received_ms)

    def done(self) -> list[Queued[T]]:
        """Pop the dead letters at the heads: nothing to apply, only to acknowledge."""
        q0, q1, q2 = self.queues
        if (
            (not q0 or q0[0].doc is not None)
            and (not q1 or q1[0].doc is not None)
            and (not q2 or q2[0].doc is not None)
        ):
            return []  # the common case, twice per applied document
        out: list[Queued[T]] = []
        for queue in self.queues:
            while queue and queue[0].doc is None:
                out.append(queue.popleft())
        return out

    def head(self) -> tuple[int, Queued[T]] | None:
        """The rank and head with the smallest merge key, None when every queue is empty."""
        best: tuple[int, int, int] | None = None
        found: tuple[int, Queued[T]] | None = None
        for rank, queue in enumerate(self.queues):
            if queue:
                item = queue[0]
                key = merge_key(item, rank)
                if best is None or key < best:
                    best, found = key, (rank, item)
        return found

    def passing(self, now_ms: int, head: Queued[T] | None = None, covered: Collection[int] = ()) -> list[int] | None:
        """The empty queues' ranks the broker must be asked about; None while the first rule holds.

        [] when every queue holds a document or every empty one is `covered` (ranks that cannot
        still receive a document before the head); None while an empty queue not covered has
        had its topic deliver something less than `silent_ms` ago, or `head` (when given) is
        younger than that by its producer's timestamp (`ready_ms`).
        """
        q0, q1, q2 = self.queues
        if q0 and q1 and q2:
            return []
        if now_ms < self.ready_ms(head, covered):
            return None
        return [rank for rank, queue in enumerate(self.queues) if not queue and rank not in covered]

    def ready_ms(self, head: Queued[T] | None = None, covered: Collection[int] = ()) -> int:
        """When the head may pass the empty queues by the first rule (wall ms).

        Every empty queue's topic silent for `silent_ms`, and `head` that old by its
        producer's timestamp; at once when every empty queue is `covered`.
        """
        waiting = False
        ready = -(2**62)
        for rank, queue in enumerate(self.queues):
            if not queue and rank not in covered:
                waiting = True
                ready = max(ready, self.last_seen_ms[rank] + self.silent_ms)
        if waiting and head is not None:
            ready = max(ready, (head.sent_ms if head.sent_ms >= 0 else head.received_ms) + self.silent_ms)
        return ready

    def pop(self, rank: int) -> Queued[T]:
        """Take the head of one queue (the one `head` named)."""
        return self.queues[rank].popleft()

    def flow(self, bound: int) -> tuple[list[int], list[int]]:
        """(ranks to pause, ranks to resume) for a bound of `bound` (>= 1) documents per queue.

        A queue at `bound` or more is paused; a paused one resumes once it holds `bound // 2`
        or fewer. So an empty queue, the only kind the merge waits for, is never paused and
        never stays paused. The shell records what it did in `paused`. Messages fetched
        before a pause still arrive: the bound is a high mark, not a hard limit.
        """
        paused, queues = self.paused, self.queues
        if not paused and len(queues[0]) < bound and len(queues[1]) < bound and len(queues[2]) < bound:
            return [], []  # the common case, on every input message: nothing to change
        low = bound // 2
        pause = [r for r, q in enumerate(queues) if r not in paused and len(q) >= bound]
        resume = sorted(r for r in paused if len(queues[r]) <= low)
        return pause, resume

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues)
