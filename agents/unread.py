"""Does the broker hold input this worker has not received? (the merge's and the idle rule's question)"""

from __future__ import annotations

import logging

import faust
from faust.types import TP

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
        if high is not None and high > wanted:
            return True
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
        try:
            end = await self._side.log_end(topic, partition)
        except Exception as exc:  # noqa: BLE001 - broker unreachable: wait, the ticks retry
            log.warning("%s[%d]: log end unknown (%s); the merge waits", topic, partition, type(exc).__name__)
            return True
        self._asked[(topic, partition)] = (wanted, now, end)
        return end > wanted
