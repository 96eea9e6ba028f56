"""agents.stream: a message's release acks it and makes the offset after it committable, unless a
rebalance came since the message was received."""

from __future__ import annotations

from agents.commits import Commits
from agents.sender import Msg
from agents.stream import _Release


def _commits() -> Commits:
    async def commit(offsets: dict[tuple[str, int], int]) -> bool:
        return True

    return Commits(committed=lambda topic, partition: None, commit=commit, grace_s=3.0)


def _msg(offset: int) -> Msg:
    return Msg("clearance.ticks", 5, offset, None, b'{"eventTime": 1}', None)


def test_a_release_acks_and_makes_the_next_offset_committable() -> None:
    commits, acked = _commits(), []
    _Release(lambda: acked.append(7), _msg(7), commits)()
    assert acked == [7]
    assert commits.position("clearance.ticks", 5) == 8


def test_a_message_received_before_a_rebalance_is_not_acked_after_it() -> None:
    """The flush tick that came while the partitions were revoked, acked once its handling ended:
    the worker that got the partition back committed past it and never applied it."""
    commits, acked = _commits(), []
    before = _Release(lambda: acked.append(0), _msg(0), commits)
    commits.reset()  # the rebalance (agents/app.py `_on_rebalance`)
    before()
    assert acked == []
    assert commits.position("clearance.ticks", 5) is None  # the committed offset stays before it
    after = _Release(lambda: acked.append(1), _msg(1), commits)
    after()
    assert acked == [1]
    assert commits.position("clearance.ticks", 5) == 2


def test_every_rebalance_counts() -> None:
    commits, acked = _commits(), []
    release = _Release(lambda: acked.append(3), _msg(3), commits)
    commits.reset()
    commits.reset()
    release()
    assert acked == []
