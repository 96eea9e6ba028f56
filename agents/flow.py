"""Hold and release the join's input partitions in Faust's Kafka client: the merge queues' bound.

The join (agents/join.py) bounds each merge queue (pipeline/merge.py, `Merge.flow`): a
topic partition whose queue is full is fetched no more until its queue has drained.
Kafka Streams does the same with `buffered.records.per.partition`.

The hold is aiokafka's pause (agents/faust_internals.py `hold_fetch`, where the reasons
against Faust's `pause_partitions` and its stream-buffer flow control are), applied in
Faust's consumer thread. Faust pauses and resumes partitions itself (a rebalance, the
recovery, its stream buffer) in its own books, one level up, and never in aiokafka: the
two do not meet. A rebalance gives every partition a fresh, unpaused state in aiokafka,
and the join forgets its holds with its queues; a hold or release that crosses a
rebalance is put right at the partition's next tick (the join tells every state again).

What Faust had fetched already still arrives, and aiokafka keeps its position: the bound
is a high mark, and nothing is skipped.
"""

from __future__ import annotations

import faust

from agents.faust_internals import hold_fetch


class InputFlow:
    """Hold or release one input topic partition in the app's consumer."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def hold(self, topic: str, partition: int, held: bool) -> bool:
        """Fetch `topic[partition]` no more (`held`) or again; False when the consumer is not running."""
        return hold_fetch(self._app, topic, partition, held)
