"""agents/group.py on the real broker: the consumer group's state, as the assignor's hold asks it."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from agents.group import GroupProbe
from clearance.kafka import client_config
from clearance.settings import Settings

pytestmark = pytest.mark.integration


def _member(settings: Settings) -> Consumer:
    config = {
        **client_config(settings),
        "group.id": settings.app_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 30000,
        "max.poll.interval.ms": 60000,
    }
    return Consumer(config)


def _assigned(consumer: Consumer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        assert time.monotonic() < deadline, "never assigned"
        consumer.poll(0.1)


def test_the_probe_hears_a_second_member_join_a_stable_group(kafka_settings: Settings) -> None:
    """Stable with one member: not rebalancing. A second member asks to join while the first does
    not poll (so it cannot rejoin): the broker prepares a rebalance, and the probe says so."""
    probe = GroupProbe(kafka_settings)
    first = _member(kafka_settings)
    second = _member(kafka_settings)
    try:
        first.subscribe([kafka_settings.topic_orders])
        _assigned(first)
        probe.connect()
        assert probe.rebalancing(5.0) is False, "one member, stable"
        second.subscribe([kafka_settings.topic_orders])
        deadline = time.monotonic() + 20
        heard = False
        while not heard and time.monotonic() < deadline:
            second.poll(0.05)  # its JoinGroup; the first one is not polled meanwhile
            heard = probe.rebalancing(1.0)
        assert heard, "the broker never said the group is preparing a rebalance"
    finally:
        probe.close()
        second.close()
        first.close()
