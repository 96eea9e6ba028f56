"""The consumer group's state as the broker tells it, for the assignor's hold at a start.

The leader of a group's first generation holds its assignment while fewer members have
joined than the processes started together (agents/faust_internals.py `PartitionAssignor`).
It used to hold a fixed 0.2 s; it now ends the hold as soon as the broker says the group is
rebalancing again, that is, another member's JoinGroup has arrived (Kafka's
DescribeGroups: state PreparingRebalance). One admin client, made as the worker starts
(`connect`), answers every question of the hold and is dropped after it.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from clearance.kafka import admin_config
from clearance.settings import Settings

log = logging.getLogger("clearance.worker")


class GroupProbe:
    """Asks the broker whether the worker's consumer group is preparing a rebalance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group = settings.app_id  # Faust's consumer group is its app id
        self._admin: Any = None

    def connect(self) -> None:
        """Make the admin client now and ask once without waiting, so that it has found the
        group's coordinator and connected to it when the hold asks (made at the hold's first
        question, the first answer took 30 to 55 ms here instead of 2 to 5)."""
        if self._admin is None:
            self._admin = AdminClient(admin_config(self.settings))
            self._admin.describe_consumer_groups([self.group], request_timeout=5)  # the client keeps it

    def rebalancing(self, timeout_s: float) -> bool:
        """True when another member has asked to join since the current generation began; False
        when not, or when no answer came within `timeout_s` (the hold then goes on)."""
        if timeout_s <= 0:
            return False
        try:
            self.connect()  # made already, unless the assignor was not
            futures = self._admin.describe_consumer_groups([self.group], request_timeout=timeout_s)
            description = futures[self.group].result(timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - the assignor's thread: whatever fails, the hold just goes on
            log.debug("the group's state unknown (%r): the hold goes on", exc)
            return False
        return bool(description.state == ConsumerGroupState.PREPARING_REBALANCING)

    def close(self) -> None:
        """Drop the admin client (every question it was asked has been answered or timed out)."""
        self._admin = None
