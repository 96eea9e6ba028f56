"""agents.spill: the deadline index's full chunks on disk (issue 13), first in, first out;
opened with a partition's rebuild, closed (and deleted) when the partitions are forgotten."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.spill import DiskSpill, Spills
from agents.stores import SharedMemory, SharedRocksDBOptions
from pipeline.timeline import Timeline
from tests.agents.test_join import PARTITION, Harness
from tests.fixtures.docs import order


def test_chunks_come_back_in_the_order_they_went_in(tmp_path: Path) -> None:
    spill = DiskSpill(tmp_path / "p0", SharedRocksDBOptions(SharedMemory()))
    for i in range(100):
        spill.put(b"chunk %03d " % i + b"x" * 65_000)
    assert len(spill) == 100
    assert [spill.take()[:9] for _ in range(50)] == [b"chunk %03d" % i for i in range(50)]
    spill.put(b"chunk 100")
    assert len(spill) == 51
    assert [spill.take()[:9] for _ in range(51)] == [b"chunk %03d" % i for i in range(50, 101)]
    with pytest.raises(IndexError):
        spill.take()
    spill.close()
    assert not (tmp_path / "p0").exists()


def test_a_spill_starts_empty_and_spills_start_with_an_empty_directory(tmp_path: Path) -> None:
    root = tmp_path / "deadline-spill"
    (root / "p7").mkdir(parents=True)
    (root / "p7" / "000012.sst").write_bytes(b"left behind by a crash")
    spills = Spills(root, SharedMemory())  # the next start
    assert not root.exists()
    first = spills.open(2)
    first.put(b"chunk")
    again = spills.open(2)  # assigned again before the first is closed: a directory of its own
    assert len(again) == 0
    with pytest.raises(IndexError):
        again.take()
    assert first.take() == b"chunk"
    first.close()
    again.close()
    assert list(root.iterdir()) == []


def test_a_timeline_over_a_disk_spill_pops_as_the_pairs(tmp_path: Path) -> None:
    """120,000 retention deadlines in order (~55 chunks): all but the front and back chunks
    go to disk and come back in order, with window deadlines between them."""
    spill = Spills(tmp_path, SharedMemory()).open(0)
    timeline = Timeline(spill=spill)
    scheduled = []
    for i in range(120_000):
        scheduled.append((10_000 + i, f"HZ2026111100{i:09d}", False))
        timeline.schedule(*scheduled[-1])
        if i % 1000 == 0:
            scheduled.append((i * 7 % 9_000, f"W{i:09d}", True))
            timeline.schedule(*scheduled[-1])
    assert len(spill) > 40
    reference = sorted(scheduled)  # no two entries share a deadline: the kind never decides
    popped = timeline.due(10_000 + 60_000)
    assert popped == [pair for pair in reference if pair[0] < 70_000]
    assert popped + timeline.drain() == reference
    assert len(spill) == 0
    spill.close()


class _FakeSpill:
    def __init__(self, partition: int, log: list[str]) -> None:
        self.partition, self.log = partition, log
        log.append(f"open {partition}")

    def put(self, chunk: bytes) -> None:
        raise AssertionError("not in this test")

    def take(self) -> bytes:
        raise AssertionError("not in this test")

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        self.log.append(f"close {self.partition}")


def test_the_join_opens_a_partitions_spill_at_its_rebuild_and_closes_it_after_it_is_forgotten() -> None:
    """Closed when the next message comes, not at the rebalance: the message being handled
    when the rebalance came may still use the forgotten partition's index."""
    log: list[str] = []

    async def main() -> None:
        harness = Harness(spills=lambda partition: _FakeSpill(partition, log))
        await harness.feed("orders", order())
        assert log == [f"open {PARTITION}"]
        assert harness.join.partitions[PARTITION].spill is not None
        harness.join.forget_partitions()
        assert log == [f"open {PARTITION}"]
        await harness.feed("orders", order(orderNo="HZ202611110000099"))
        assert log == [f"open {PARTITION}", f"close {PARTITION}", f"open {PARTITION}"]  # rebuilt: a new spill

    asyncio.run(main())


class _BrokenSpill(_FakeSpill):
    def close(self) -> None:
        raise OSError("disk gone")


def test_a_spill_that_fails_to_close_costs_the_next_message_nothing(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []

    async def main() -> Harness:
        harness = Harness(spills=lambda partition: _BrokenSpill(partition, log))
        await harness.feed("orders", order())
        harness.join.forget_partitions()
        await harness.feed("orders", order(orderNo="HZ202611110000099"))
        return harness

    harness = asyncio.run(main())
    assert [topic for topic, _ in harness.sent if topic == "deadletter"] == []
    assert harness.join.metrics.counts[("internal_errors", "")] == 0
    assert len(harness.join.partitions[PARTITION].merge) == 1  # the second order, queued for its turn
    assert "deadline spill failed" in caplog.text
