"""Commits that follow the released acks when Faust's own stay behind (agents/commits.py)."""

from __future__ import annotations

import asyncio

from agents.commits import Commits, TopicPartition


class Group:
    """The group's committed offsets, as Faust records them, and the commits made here."""

    def __init__(self, fail: bool = False) -> None:
        self.offsets: dict[TopicPartition, int] = {}
        self.made: list[dict[TopicPartition, int]] = []
        self.fail = fail
        self.now = 0.0

    def committed(self, topic: str, partition: int) -> int | None:
        return self.offsets.get((topic, partition))

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        if self.fail:
            raise ConnectionError("broker gone")
        self.made.append(dict(offsets))
        self.offsets.update(offsets)
        return True

    def commits(self) -> Commits:
        return Commits(committed=self.committed, commit=self.commit, grace_s=3.0, clock=lambda: self.now)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_faust_catching_up_in_time_means_no_commit_here() -> None:
    group = Group()
    commits = group.commits()
    for offset in range(10):
        commits.released("orders", 3, offset)
    assert commits.behind() == {("orders", 3): 10}
    assert run(commits.catch_up()) == {}
    group.now = 1.0
    group.offsets["orders", 3] = 10  # Faust's own commit
    assert run(commits.catch_up()) == {}
    group.now = 10.0
    assert run(commits.catch_up()) == {}
    assert group.made == []


def test_a_stalled_partition_is_committed_after_the_grace() -> None:
    group = Group()
    group.offsets["waybills", 11] = 167  # Faust stopped here: an offset in neither of its lists
    commits = group.commits()
    for offset in range(167, 862):
        commits.released("waybills", 11, offset)
    commits.released("orders", 0, 5)
    group.offsets["orders", 0] = 6
    assert run(commits.catch_up()) == {}
    group.now = 2.9
    assert run(commits.catch_up()) == {}
    group.now = 3.0
    assert run(commits.catch_up()) == {("waybills", 11): 862}
    assert group.made == [{("waybills", 11): 862}]
    assert commits.caught_up == 1
    group.now = 100.0
    assert run(commits.catch_up()) == {}  # nothing new released: nothing more to do


def test_faust_moving_slowly_restarts_the_grace() -> None:
    group = Group()
    group.offsets["payments", 9] = 0
    commits = group.commits()
    commits.released("payments", 9, 999)
    run(commits.catch_up())
    group.now, group.offsets["payments", 9] = 2.0, 500
    run(commits.catch_up())
    group.now = 4.0  # 4 s since the first look, but only 2 s since Faust last moved
    assert run(commits.catch_up()) == {}
    group.now = 5.0
    assert run(commits.catch_up()) == {("payments", 9): 1000}


def test_released_offsets_only_move_forward() -> None:
    commits = Group().commits()
    commits.released("orders", 1, 41)
    commits.released("orders", 1, 7)  # a late ack of an earlier offset never moves it back
    assert commits.position("orders", 1) == 42
    assert commits.position("orders", 2) is None


def test_commit_all_commits_everything_behind_at_once() -> None:
    group = Group()
    group.offsets["orders", 0] = 100
    commits = group.commits()
    commits.released("orders", 0, 149)
    commits.released("orders", 1, 0)  # nothing committed yet for this partition
    commits.released("orders", 2, 9)
    group.offsets["orders", 2] = 10
    assert run(commits.commit_all("partitions revoked")) == {("orders", 0): 150, ("orders", 1): 1}
    assert group.offsets == {("orders", 0): 150, ("orders", 1): 1, ("orders", 2): 10}


def test_a_rebalance_forgets_what_was_released() -> None:
    group = Group()
    commits = group.commits()
    commits.released("orders", 0, 10)
    commits.reset()
    group.now = 100.0
    assert run(commits.catch_up()) == {}
    assert run(commits.commit_all("stopping")) == {}
    assert group.made == []


def test_a_failed_commit_is_retried_on_the_next_tick() -> None:
    group = Group(fail=True)
    commits = group.commits()
    commits.released("orders", 0, 10)
    group.now = 5.0
    run(commits.catch_up())
    group.now = 10.0
    assert run(commits.catch_up()) == {("orders", 0): 11}  # returned as due; the commit raised
    assert group.offsets == {}
    group.fail = False
    group.now = 11.0
    run(commits.catch_up())
    assert group.offsets == {("orders", 0): 11}
