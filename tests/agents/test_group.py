"""agents/group.py without a broker: the probe answers no, within the time it is given."""

from __future__ import annotations

import time

from agents.group import GroupProbe
from clearance.settings import Settings


def test_without_a_broker_the_probe_answers_no_within_its_time() -> None:
    nowhere = Settings().with_overrides(bootstrap="127.0.0.1:9", app_id="clearance-test-probe")  # the discard port
    probe = GroupProbe(nowhere)
    began = time.monotonic()
    assert probe.rebalancing(0.3) is False
    assert probe.rebalancing(0.0) is False
    assert time.monotonic() - began < 5
    probe.close()
