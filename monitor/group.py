"""The worker group as the floor sees it: members, lag per input partition, and whether lag grows.

`probe_group` asks the Admin API (committed offsets of the worker's group against the
high watermarks of the input topics, and the group's members), so the figures are right
for any number of workers and need no access to the workers themselves. `LagTrend` is
pure: it keeps the recent totals and says when the backlog keeps growing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # exported, untyped

from clearance.kafka import admin_config
from clearance.settings import Settings

GROWING_SAMPLES = 5  # lag up at each of the last 5 samples (about 5 s at one a second): a warning


@dataclass
class GroupView:
    """One sample of the worker group."""

    group: str
    members: int = 0
    state: str = "unknown"
    partitions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def total_lag(self) -> int:
        return sum(p["lag"] for p in self.partitions)

    def as_dict(self, trend: LagTrend) -> dict[str, Any]:
        return {
            "group": self.group,
            "members": self.members,
            "state": self.state,
            "partitions": self.partitions,
            "totalLag": self.total_lag,
            "growing": trend.growing(),
            "error": self.error,
        }


class LagTrend:
    """The last few total lags; `growing` when each sample was above the one before."""

    def __init__(self, samples: int = GROWING_SAMPLES) -> None:
        self.totals: deque[int] = deque(maxlen=samples + 1)

    def add(self, total: int) -> None:
        self.totals.append(total)

    def growing(self) -> bool:
        values = list(self.totals)
        return len(values) == self.totals.maxlen and all(b > a for a, b in zip(values, values[1:], strict=False))


def probe_group(admin: AdminClient, settings: Settings, timeout: float = 10.0) -> GroupView:
    """Members and the lag of every input partition of the worker group `settings.app_id`."""
    view = GroupView(settings.app_id)
    try:
        described = admin.describe_consumer_groups([settings.app_id], request_timeout=timeout)[settings.app_id]
        description = described.result()
        view.members = len(description.members)
        view.state = str(getattr(description.state, "name", description.state)).lower()
        metadata = admin.list_topics(timeout=timeout)
        tps = [
            TopicPartition(topic, p)
            for topic in settings.input_topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        if not tps:
            return view
        request = [ConsumerGroupTopicPartitions(settings.app_id, tps)]
        committed = admin.list_consumer_group_offsets(request, request_timeout=timeout)[settings.app_id].result()
        done = {(tp.topic, tp.partition): tp.offset for tp in committed.topic_partitions}
        highs = _offsets(admin, tps, OffsetSpec.latest(), timeout)  # type: ignore[no-untyped-call]
        lows = _offsets(admin, tps, OffsetSpec.earliest(), timeout)  # type: ignore[no-untyped-call]
    except KafkaException as exc:
        view.error = exc.args[0].str() if exc.args else str(exc)
        return view
    for tp in tps:
        key = (tp.topic, tp.partition)
        start = done.get(key, -1)
        start = start if start >= 0 else lows[key]  # nothing committed yet: all of it is to do
        view.partitions.append(
            {"topic": tp.topic, "partition": tp.partition, "lag": max(highs[key] - start, 0), "end": highs[key]}
        )
    return view


def _offsets(admin: AdminClient, tps: list[TopicPartition], spec: Any, timeout: float) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))
