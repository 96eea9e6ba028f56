"""The worker's internal topics, created before Faust starts.

Faust declares its internal topics itself, but on a fresh app id it does so while
the first rebalance is already under way: the assignor then logs "Ignoring missing
topic" and the quota agent gets no partition of the repartition topic until the
next rebalance. Creating them first (idempotently, same partition count as the
inputs, so the assignor co-partitions them) removes the race.
"""

from __future__ import annotations

from clearance.settings import Settings
from clearance.topics import TopicSpec, ensure_specs

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
