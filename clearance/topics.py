"""`clearance topics create`: the pipeline's topics, created idempotently.

The three input topics and the tick topic are co-partitioned: one order's three
documents must land in the same partition number, and a worker's tick for a
partition must reach the task owning that partition. So they all have one
partition count; `ensure_topics` refuses (TopicLayoutError) to go on when
existing ones differ, since repartitioning would silently split orders.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from clearance.kafka import MAX_MESSAGE_BYTES, KafkaUnavailable, admin_config, denied, probe
from clearance.settings import Settings

_DAY_MS = 86_400_000
_INPUT_MAX_BYTES = 16 * 1024 * 1024  # a 10 MB input message plus batch overhead


class TopicsError(RuntimeError):
    """The topics could not be listed or created (broker unreachable, refused)."""


class _Denied(Exception):
    """The broker's ACLs deny this client the topic named."""


class TopicLayoutError(TopicsError):
    """Existing co-partitioned topics do not have the required partition count."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    copartitioned: bool = False


def topic_specs(settings: Settings, partitions: int | None = None) -> tuple[TopicSpec, ...]:
    """Every topic the pipeline uses, with its partition count and configuration."""
    count = settings.partitions if partitions is None else partitions
    inputs = _config(days=7, max_bytes=_INPUT_MAX_BYTES)
    outputs = _config(days=30, max_bytes=1024 * 1024)
    specs = [TopicSpec(name, count, inputs, copartitioned=True) for name in settings.input_topics]
    specs.append(TopicSpec(settings.topic_ticks, count, _config(days=1, max_bytes=1024 * 1024), copartitioned=True))
    specs += [TopicSpec(name, count, outputs) for name in (settings.topic_matched, settings.topic_flagged)]
    specs.append(TopicSpec(settings.topic_deadletter, count, _config(days=30, max_bytes=MAX_MESSAGE_BYTES)))
    return tuple(specs)


def ensure_topics(settings: Settings, partitions: int | None = None, *, timeout: float = 30.0) -> list[str]:
    """Create the pipeline's missing topics; return their names (see `ensure_specs`)."""
    return ensure_specs(settings, topic_specs(settings, partitions), timeout=timeout)


def ensure_specs(settings: Settings, specs: tuple[TopicSpec, ...], *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics of `specs`; return their names. Existing topics are kept as they are.

    The one place that creates topics (`clearance topics create`, and the worker's
    internal topics). Raises TopicLayoutError if an existing co-partitioned topic has
    another partition count than its spec (before or after creating), TopicsError on
    broker errors.
    """
    admin = AdminClient(admin_config(settings))
    names = [s.name for s in specs]
    try:
        counts = _partition_counts(admin, names, timeout)
        _check_layout(specs, counts)
        missing = [s for s in specs if s.name not in counts]
        if missing:
            _create(admin, missing, settings, timeout)
        _check_layout(specs, _wait_for(admin, names, timeout))
    except _Denied as exc:
        raise TopicsError(denied(str(exc), "describe", settings)) from None
    return [s.name for s in missing]


def _config(*, days: int, max_bytes: int) -> dict[str, str]:
    return {"retention.ms": str(days * _DAY_MS), "max.message.bytes": str(max_bytes), "cleanup.policy": "delete"}


def _partition_counts(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """Partition count per topic; waits out transient errors (a topic just created has no leader yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise TopicsError(f"cannot list topics: {exc}") from exc
        for name in names:
            error = metadata.topics[name].error if name in metadata.topics else None
            if error is not None and error.code() in _DENIED:
                raise _Denied(name)
        settled = all(metadata.topics[n].error is None for n in names if n in metadata.topics)
        if settled or time.monotonic() > deadline:
            return {n: len(t.partitions) for n, t in metadata.topics.items() if n in names and t.error is None}
        time.sleep(0.1)


def _check_layout(specs: tuple[TopicSpec, ...], counts: Mapping[str, int]) -> None:
    wrong = {
        s.name: counts[s.name] for s in specs if s.copartitioned and counts.get(s.name, s.partitions) != s.partitions
    }
    if wrong:
        want = next(s.partitions for s in specs if s.copartitioned)
        found = ", ".join(f"{name} has {count}" for name, count in sorted(wrong.items()))
        raise TopicLayoutError(
            f"co-partitioned topics must all have {want} partitions, but {found}; "
            "pass --partitions to match the existing topics, or recreate them"
        )


_DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def _create(admin: AdminClient, specs: list[TopicSpec], settings: Settings, timeout: float) -> None:
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.replication, config=dict(s.config))
        for s in specs
    ]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created concurrently by someone else: checked below
            if isinstance(error, KafkaError) and error.code() in _DENIED:
                raise TopicsError(denied(name, "create", settings)) from None
            raise TopicsError(f"cannot create topic {name}: {exc}") from exc


def _wait_for(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _partition_counts(admin, names, timeout)
        absent = [name for name in names if name not in counts]
        if not absent:
            return counts
        if time.monotonic() > deadline:
            raise TopicsError(f"topics not visible after {timeout:.0f} s: {', '.join(absent)}")
        time.sleep(0.1)


def cli(argv: list[str]) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="clearance topics", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("create",))
    parser.add_argument("--partitions", type=int, default=None, help=f"for every topic (default {settings.partitions})")
    args = parser.parse_args(argv)
    if args.partitions is not None and args.partitions < 1:
        parser.error("--partitions must be at least 1")
    try:
        probe(settings)
        created = ensure_topics(settings, args.partitions)
    except KafkaUnavailable as exc:
        print(f"clearance topics: {exc}", file=sys.stderr)
        return 1
    except TopicLayoutError as exc:
        print(f"clearance topics: refused: {exc}", file=sys.stderr)
        return 2
    except TopicsError as exc:
        print(f"clearance topics: {exc}", file=sys.stderr)
        return 1
    kept = len(topic_specs(settings)) - len(created)
    print(
        f"created {len(created)} topic(s) on {settings.bootstrap}: {', '.join(created) or '-'}; {kept} already existed"
    )
    return 0
