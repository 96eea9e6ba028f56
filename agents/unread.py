"""Does the broker hold input this worker has not received? (the merge's and the idle rule's question)"""

from __future__ import annotations

import logging
from collections.abc import Callable

import faust
from faust.types import TP

from agents.faust_internals import last_fetch_ms
from agents.metrics import Metrics
from agents.sequence import Sequencer
from agents.side_reader import SideReader
from clearance.clock import wall_ms

log = logging.getLogger("clearance.worker")


class UnreadCheck:
    """Whether the broker holds messages of an input partition that this worker has not received.

    The merge (agents/join.py) asks before it lets a document pass an empty queue, and the idle
    rule before it moves event time with the wall clock. The consumer's high watermark comes
    from its last fetch of that partition, which can be seconds old: a partition whose buffer
    still holds records, or that flow control paused, is not fetched. Trusting it let a worker
    apply all the orders of a partition before its payments and waybills, which the broker had
    held for seconds (issue 10). So the watermark answers "nothing unread" only when it came
    from a fetch made after the document that asks arrived (`since_ms`): under traffic the
    consumer fetches every caught-up partition many times a second, and the answer costs
    nothing. Otherwise the broker is asked (one ListOffsets, a few ms, while the join
    waits). An answer counts for documents that arrived before it was asked; a newer document
    waits for the next question, asked at most every `_EVERY_MS` per partition, so a silent
    topic costs a few requests a second, not one per message. Unknown counts as unread: the
    merge waits (the ticks retry it)."""

    _EVERY_MS = 200

    def __init__(
        self,
        app: faust.App,
        side: SideReader,
        sequence: Sequencer,
        metrics: Metrics,
        fetched_ms: Callable[[str, int], int | None] | None = None,
    ) -> None:
        """`fetched_ms(topic, partition)`: when the consumer's high watermark of the partition was
        last set by a fetch (wall ms; None: unknown); by default Faust's consumer's."""
        self._app = app
        self._side = side
        self._sequence = sequence
        self._fetched_ms = fetched_ms or (lambda topic, partition: last_fetch_ms(app, topic, partition))
        self._metrics = metrics
        self._asked: dict[tuple[str, int], tuple[int, int, int]] = {}  # tp -> (next offset, wall ms, log end)

    async def __call__(self, topic: str, partition: int, since_ms: int) -> bool:
        # None also while the drain hands over messages the offset guard read directly: its next
        # offset is past them, yet they are not in the merge's queues. Trusting it, a tail of the
        # three topics read at once let the merge apply a partition's orders and payments before
        # its waybills, which waited in the same read (a two-process test: 8 extra declarations).
        wanted = self._sequence.handed(topic, partition)
        if wanted is None:
            return True
        fetched = self._fetched_ms(topic, partition)  # read before the watermark: never newer than it
        try:
            high = self._app.consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not assigned any more: nothing will come
            return False
        if high is not None:
            if high > wanted:
                return True
            if fetched is not None and fetched > since_ms:
                return False  # the broker had nothing more when the consumer fetched, after `since_ms`
        # None: the consumer has not fetched the partition since the assignment (aiokafka knows a
        # high watermark only from a fetch response). Waiting for one held a partition's last
        # documents for good after a hand-over when nothing more came to that topic partition
        # (its commits stopped a few offsets short): ask the broker instead.
        now = wall_ms()
        asked = self._asked.get((topic, partition))
        if asked is not None and asked[0] == wanted:
            if asked[2] > wanted or asked[1] >= since_ms:
                return asked[2] > wanted
            if now - asked[1] < self._EVERY_MS:
                return True  # asked a moment ago: wait for the next try
        self._metrics.inc("merge_broker_asks", topic)
        try:
            end = await self._side.log_end(topic, partition)
        except Exception as exc:  # noqa: BLE001 - broker unreachable: wait, the ticks retry
            log.warning("%s[%d]: log end unknown (%s); the merge waits", topic, partition, type(exc).__name__)
            return True
        self._asked[(topic, partition)] = (wanted, now, end)
        return end > wanted
