"""Pause and resume the join's input partitions on Faust's consumer: the merge queues' bound.

The join (agents/join.py) bounds each merge queue (pipeline/merge.py, `Merge.flow`): a
topic partition whose queue is full is paused on Faust's consumer (nothing more is
fetched of it; aiokafka keeps at most the one fetch it holds already) and resumed when
its queue has drained. Kafka Streams does the same with `buffered.records.per.partition`.

Faust pauses partitions itself: every assigned partition when a rebalance starts, the
changelogs during recovery; the end of its recovery resumes every stream partition. So
nothing is paused or resumed here unless the tables are recovered and no rebalance is
under way (a resume then could undo Faust's own pause), and the join forgets its pauses
at every rebalance (Faust's recovery resumes them). Faust's flow control of its stream
buffer takes a partition out of the fetch as well (`on_buffer_full`) and puts it back
(`on_buffer_drop`), ours included: the join pauses a partition again whenever its queue
is still full, and a resume leaves a partition that flow control holds to it.

Faust's `getmany` drops the rest of a fetched batch for a partition paused while it walks
through it, and the consumer's position has moved past those records. The offset check
(agents/sequence.py) would read them directly when the next message of that partition
arrives; to keep that path for real faults, a resume first seeks the partition back to
the offset after the last one Faust handed to the streams, when the position is past it.
"""

from __future__ import annotations

import logging

import faust
from faust.types import TP

from agents.faust_internals import delivered_offset, is_recovered, resume_input

log = logging.getLogger("clearance.worker.flow")


class InputFlow:
    """`pause` and `resume` of one input topic partition, on the app's consumer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def pause(self, topic: str, partition: int) -> bool:
        """Pause fetching `topic[partition]`; False (nothing done) during a rebalance or recovery."""
        if not is_recovered(self._app):
            return False
        self._app.consumer.pause_partitions({TP(topic, partition)})
        return True

    async def resume(self, topic: str, partition: int) -> bool:
        """Resume fetching `topic[partition]` from the offset after the last one handed to the
        streams; False (nothing done) during a rebalance or recovery: Faust's recovery resumes it."""
        if not is_recovered(self._app):
            return False
        tp = TP(topic, partition)
        consumer = self._app.consumer
        delivered = delivered_offset(self._app, topic, partition)
        if delivered is not None:
            try:
                position = await consumer.position(tp)
                if position is not None and position > delivered + 1 and is_recovered(self._app):
                    await consumer.seek_wait({tp: delivered + 1})
            except Exception as exc:  # noqa: BLE001 - the offset check reads what was dropped
                log.warning("%s[%d]: no seek back before the resume (%s)", topic, partition, type(exc).__name__)
        if not is_recovered(self._app):
            return False  # a rebalance began meanwhile: Faust paused everything, its recovery resumes it
        resume_input(self._app, topic, partition)
        return True
