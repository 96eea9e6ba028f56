"""Candidates bound for the quota stage, gathered into one record per candidates partition.

A candidate published as a record of its own crossed Faust's whole per-message path a second
time in the quota agent (fetcher, conductor, stream, event, ack: about as much as the input
document that completed its order) and took a delivery report of its own. Here the join
agent's candidates wait, per candidates partition, and leave as one record each
(`pipeline.codec.encode_candidates`):

* before every watermark record (`Sender.watermarks`): a watermark must follow the
  candidates its join partition emitted before it, on every candidates partition, or the
  quota stage could pass a candidate still waiting here. The quota stage decides a candidate
  only once the watermarks have passed it, so waiting for the next watermark costs a
  declaration no time (a late candidate, below the watermarks already, waits at most one
  watermark interval more);
* when the ack batch is sealed (`Delivery`, as `held`): the inputs that caused them are
  acked only once they are delivered.

A candidate goes to the partition its buyer key would go to as a record's key (Kafka's
murmur2, as librdkafka's `murmur2_random` and the Java client do: pipeline/partitioner.py), so
each buyer's quota state stays in the partition that holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.codec import encode_candidates
from pipeline.partitioner import partition_of

Produce = Callable[[int, bytes], None]  # (partition, value): counted into the open ack batch


class CandidateBatch:
    """Candidates waiting per candidates partition until `drain`."""

    __slots__ = ("_produce", "_waiting", "partitions", "records", "candidates")

    def __init__(self, partitions: int, produce: Produce) -> None:
        self.partitions = partitions
        self._produce = produce
        self._waiting: dict[int, list[bytes]] = {}
        self.records = 0  # records produced
        self.candidates = 0  # candidates in them

    def add(self, key: bytes, value: bytes) -> None:
        """One candidate (`encode_candidate` bytes) of the buyer `key`."""
        partition = partition_of(key, self.partitions)
        waiting = self._waiting.get(partition)
        if waiting is None:
            self._waiting[partition] = [value]
        else:
            waiting.append(value)

    def __len__(self) -> int:
        return sum(len(values) for values in self._waiting.values())

    def drain(self) -> list[Any]:
        """Produce what waits, one record per partition (into the open batch's tally): no futures
        of its own."""
        waiting, self._waiting = self._waiting, {}
        for partition, values in waiting.items():
            self._produce(partition, encode_candidates(values))
            self.records += 1
            self.candidates += len(values)
        return []
