"""The worker's internal topics, created before Faust starts.

Faust declares its internal topics itself, but on a fresh app id it does so while
the first rebalance is already under way: the assignor then logs "Ignoring missing
topic" and the quota agent gets no partition of the repartition topic until the
next rebalance. Creating them first (idempotently, same partition count as the
inputs, so the assignor co-partitions them) removes the race.
"""

from __future__ import annotations

import time
from typing import Any

from clearance.kafka import admin_config
from clearance.settings import Settings
from clearance.topics import TopicsError, TopicSpec

TABLES = ("join", "clock", "quota")


def candidates_topic(settings: Settings) -> str:
    return f"{settings.app_id}-candidates"


def internal_specs(settings: Settings) -> list[TopicSpec]:
    compact = {"cleanup.policy": "compact"}
    specs = [TopicSpec(candidates_topic(settings), settings.partitions, {"retention.ms": str(7 * 86_400_000)})]
    specs += [TopicSpec(f"{settings.app_id}-{name}-changelog", settings.partitions, compact) for name in TABLES]
    return specs


def ensure_internal_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the missing internal topics; raise TopicsError on a wrong partition count."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(admin_config(settings))
    specs = internal_specs(settings)
    deadline = time.monotonic() + timeout
    try:
        counts = _counts(admin, timeout)
        missing = [s for s in specs if s.name not in counts]
        if missing:
            new = [NewTopic(s.name, s.partitions, settings.replication, config=dict(s.config)) for s in missing]
            for name, future in admin.create_topics(new, operation_timeout=timeout).items():
                try:
                    future.result()
                except KafkaException as exc:
                    err = exc.args[0]
                    if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                        raise TopicsError(f"cannot create {name}: {exc}") from exc
        while any(s.name not in (counts := _counts(admin, timeout)) for s in specs):
            if time.monotonic() > deadline:
                raise TopicsError("internal topics not visible in time")
            time.sleep(0.1)
    except KafkaException as exc:
        raise TopicsError(f"cannot list or create topics: {exc}") from exc
    wrong = [f"{s.name} has {counts[s.name]}" for s in specs if counts[s.name] != settings.partitions]
    if wrong:
        raise TopicsError(f"internal topics must have {settings.partitions} partitions: {', '.join(wrong)}")


def _counts(admin: Any, timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
