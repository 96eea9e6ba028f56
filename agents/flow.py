"""Hold and release the join's input partitions on Faust's consumer: the merge queues' bound.

The join (agents/join.py) bounds each merge queue (pipeline/merge.py, `Merge.flow`): a
topic partition whose queue is full fetches nothing more (aiokafka keeps at most the one
fetch it holds already) until its queue has drained. Kafka Streams does the same with
`buffered.records.per.partition`.

The hold is Faust's own flow control of its stream buffer (`Consumer.on_buffer_full` /
`on_buffer_drop`, agents/faust_internals.py), not `Consumer.pause_partitions`: Faust's
`getmany` drops the rest of a fetched batch of a partition paused while it walks through
it, past the consumer's position, and the offset check (agents/sequence.py) then read 500
to 2,000 records a pause directly (the soak, issue 13). With the hold, what was fetched
before it still arrives: the bound is a high mark, not a hard limit.

Faust pauses partitions itself: every assigned partition when a rebalance starts, the
changelogs during recovery; the end of its recovery resumes every stream partition. So
nothing is held or released unless the tables are recovered and no rebalance is under
way, a release leaves a partition Faust has paused to Faust, and the join forgets its
holds at every rebalance (the assignment makes every partition Faust has not paused
active again). Faust's stream-buffer flow control releases partitions too, ours
included: the join holds a partition again whenever its queue is still full.
"""

from __future__ import annotations

import faust

from agents.faust_internals import hold_fetch, is_recovered, release_fetch


class InputFlow:
    """`pause` and `resume` of one input topic partition, on the app's consumer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def pause(self, topic: str, partition: int) -> bool:
        """Fetch nothing more of `topic[partition]`; False (nothing done) during a rebalance or recovery."""
        if not is_recovered(self._app):
            return False
        hold_fetch(self._app, topic, partition)
        return True

    async def resume(self, topic: str, partition: int) -> bool:
        """Fetch `topic[partition]` again; False (nothing done) during a rebalance or recovery."""
        if not is_recovered(self._app):
            return False
        release_fetch(self._app, topic, partition)
        return True
