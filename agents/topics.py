"""The worker's internal topics, created before Faust starts.

Faust declares its internal topics itself, but on a fresh app id it does so while
the first rebalance is already under way: the assignor then logs "Ignoring missing
topic" and the quota agent gets no partition of the repartition topic until the
next rebalance. Creating them first (idempotently, same partition count as the
inputs, so the assignor co-partitions them) removes the race.
"""

from __future__ import annotations

import sys

from clearance.kafka import KafkaUnavailable, probe
from clearance.settings import Settings
from clearance.topics import TopicsError, TopicSpec, ensure_specs

TABLES = ("join", "clock", "quota")


def candidates_topic(settings: Settings) -> str:
    return f"{settings.app_id}-candidates"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def internal_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """The repartition topic and the changelogs, co-partitioned with the inputs."""
    compact = {"cleanup.policy": "compact"}
    week = {"retention.ms": str(7 * 86_400_000)}
    specs = [TopicSpec(candidates_topic(settings), settings.partitions, week, copartitioned=True)]
    specs += [TopicSpec(changelog_topic(settings, t), settings.partitions, compact, copartitioned=True) for t in TABLES]
    return tuple(specs)


def ensure_internal_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the missing internal topics; TopicsError (TopicLayoutError) on a wrong partition count."""
    ensure_specs(settings, internal_specs(settings), timeout=timeout)


def prepare_broker(settings: Settings) -> int:
    """Reach the broker and create the worker's internal topics: 0, or exit code 1 after one
    line on stderr (a missing broker, refused credentials, topics that cannot be made).

    Here, not beside Faust: the `--processes N` supervisor calls it before it starts the
    processes, and importing Faust for it cost the supervisor 0.6 CPU-s before the first one
    started."""
    try:
        probe(settings)
        ensure_internal_topics(settings)
    except (TopicsError, KafkaUnavailable) as exc:
        print(f"clearance worker: {exc}", file=sys.stderr)
        return 1
    return 0
