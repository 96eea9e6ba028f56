"""Delivery-gated acks (agents.acks.Delivery) on plain asyncio futures: no broker, no Faust.

A "send" is an `asyncio.Future` the test resolves by hand; an "ack" is a callable that
records its number. Every test runs its own event loop (asyncio.run) under a timeout, so
a release that never comes fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from agents.acks import Ack, Delivery

NEVER = 3600.0  # a max_age_s no test reaches
Future = asyncio.Future[None]


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=10))


async def spin(rounds: int = 50) -> None:
    """Let every task that can run (the batches being settled) run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Acks:
    """Ack callables that record, in release order, which of them were called."""

    def __init__(self) -> None:
        self.released: list[int] = []

    def __call__(self, n: int) -> Ack:
        return lambda: self.released.append(n)


def futures(n: int) -> list[Future]:
    loop = asyncio.get_running_loop()
    return [loop.create_future() for _ in range(n)]


def prefix_of(resolved: set[int]) -> list[int]:
    """The batches released once `resolved` are delivered: in order, up to the first gap."""
    out: list[int] = []
    while len(out) in resolved:
        out.append(len(out))
    return out


@pytest.mark.parametrize("late", [0, 1, 2])
def test_an_ack_waits_for_every_future_tracked_before_it(late: int) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1, max_age_s=NEVER)
        sends = futures(3)
        for send in sends:
            delivery.track(send)
        await delivery.ack(acks(0))
        for i, send in enumerate(sends):
            if i != late:
                send.set_result(None)
        await spin()
        assert acks.released == [], f"released while send {late} is still in flight"
        sends[late].set_result(None)
        await spin()
        assert acks.released == [0]

    run(body)


@pytest.mark.parametrize("per_batch", [1, 2])
@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_acks_are_released_in_order_whatever_order_the_sends_complete_in(
    order: tuple[int, ...], per_batch: int
) -> None:
    """Three batches, one send each; the sends complete in `order`."""

    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=per_batch, max_age_s=NEVER)
        sends = futures(3)
        for batch, send in enumerate(sends):
            delivery.track(send)
            for i in range(per_batch):
                await delivery.ack(acks(batch * per_batch + i))
        resolved: set[int] = set()
        for batch in order:
            sends[batch].set_result(None)
            resolved.add(batch)
            await spin()
            expected = [b * per_batch + i for b in prefix_of(resolved) for i in range(per_batch)]
            assert acks.released == expected, f"after sends {sorted(resolved)} completed"

    run(body)


@pytest.mark.parametrize("max_acks", [1, 2, 5])
def test_a_batch_is_sealed_at_max_acks(max_acks: int) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=max_acks, max_age_s=NEVER)
        for batch in range(2):
            before = list(range(batch * max_acks))
            for i in range(max_acks):
                await delivery.ack(acks(batch * max_acks + i))
                await spin()
                if i < max_acks - 1:
                    assert acks.released == before, f"sealed after {i + 1} of {max_acks} acks"
            assert acks.released == list(range((batch + 1) * max_acks))

    run(body)


AGE = 0.5


@pytest.mark.parametrize(
    ("gaps", "released"),
    [
        pytest.param([0.0, 0.0], [], id="younger-than-max-age"),
        pytest.param([0.6], [0, 1], id="older-than-max-age"),
        pytest.param([0.3, 0.3], [0, 1, 2], id="age-counts-from-the-oldest-ack"),
        pytest.param([0.6, 0.0], [0, 1], id="a-new-batch-starts-a-new-age"),
    ],
)
def test_a_batch_is_sealed_once_its_oldest_ack_is_older_than_max_age(gaps: list[float], released: list[int]) -> None:
    """Ack 0, then after each gap (seconds) one more ack; max_age_s is 0.5 s."""

    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1000, max_age_s=AGE)
        await delivery.ack(acks(0))
        for n, gap in enumerate(gaps, 1):
            await asyncio.sleep(gap)
            await delivery.ack(acks(n))
        await spin()
        assert acks.released == released
        await delivery.flush()
        assert acks.released == list(range(len(gaps) + 1)), "flush releases the rest"

    run(body)


@pytest.mark.parametrize("max_batches", [1, 2, 3])
def test_ack_waits_while_max_batches_are_unsettled_until_the_oldest_settles(max_batches: int) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1, max_age_s=NEVER, max_batches=max_batches)
        sends = futures(max_batches + 1)
        for n in range(max_batches):
            delivery.track(sends[n])
            await asyncio.wait_for(delivery.ack(acks(n)), timeout=1)  # up to max_batches: no wait
        delivery.track(sends[max_batches])
        blocked = asyncio.ensure_future(delivery.ack(acks(max_batches)))
        await spin()
        assert not blocked.done(), "one batch too many: ack must wait"
        for send in sends[1:max_batches]:
            send.set_result(None)
        await spin()
        assert not blocked.done(), "younger batches settled, the oldest has not"
        assert acks.released == []
        sends[0].set_result(None)
        await spin()
        assert blocked.done()
        assert acks.released == list(range(max_batches))
        sends[max_batches].set_result(None)
        await delivery.flush()
        assert acks.released == list(range(max_batches + 1))

    run(body)


def test_checkpoint_seals_the_sends_so_far_and_waits_while_too_many_batches_are_unsettled() -> None:
    """One input causing many sends (a flush): each checkpoint seals what is tracked into a
    batch, so the sends do not pile up in one; a checkpoint past max_batches waits for the
    oldest; the input's own ack still comes after every send it caused."""

    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=100, max_age_s=NEVER, max_batches=1)
        sends = futures(3)
        delivery.track(sends[0])
        await asyncio.wait_for(delivery.checkpoint(), timeout=1)  # one batch unsettled: no wait
        delivery.track(sends[1])
        blocked = asyncio.ensure_future(delivery.checkpoint())
        await spin()
        assert not blocked.done(), "two batches unsettled: the checkpoint waits"
        sends[0].set_result(None)
        await spin()
        assert blocked.done()
        delivery.track(sends[2])
        await delivery.ack(acks(0))
        sends[1].set_result(None)
        await spin()
        assert acks.released == [], "the ack waits for the sends tracked before it, checkpointed or not"
        sends[2].set_result(None)
        await delivery.flush()
        assert acks.released == [0]

    run(body)


@pytest.mark.parametrize("fails", [False, True], ids=["send-delivered", "send-failed"])
@pytest.mark.parametrize("sealed", [False, True], ids=["acks-unsealed", "acks-sealed"])
def test_revoke_drops_the_acks_not_released_but_keeps_the_sends_tracked(sealed: bool, fails: bool) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1 if sealed else 100, max_age_s=NEVER)
        before, after = futures(2)
        delivery.track(before)
        await delivery.ack(acks(0))
        await delivery.ack(acks(1))
        delivery.revoke()
        assert not delivery.settled(), "the send of a revoked ack is still tracked"
        delivery.track(after)
        await delivery.ack(acks(2))
        after.set_result(None)
        if fails:
            before.set_exception(RuntimeError("broker gone"))
        else:
            before.set_result(None)
        await delivery.flush()
        assert 0 not in acks.released and 1 not in acks.released, "an ack taken before the rebalance"
        assert delivery.broken is fails
        assert delivery.settled() is not fails
        assert acks.released == ([] if fails else [2])

    run(body)


@pytest.mark.parametrize("how", ["exception", "cancelled"])
@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_failed_send_breaks_delivery_and_releases_no_later_ack(failing: int, how: str) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1, max_age_s=NEVER)
        sends = futures(3)
        for n, send in enumerate(sends):
            delivery.track(send)
            await delivery.ack(acks(n))
        for n, send in enumerate(sends):
            if n != failing:
                send.set_result(None)
            elif how == "cancelled":
                send.cancel()
            else:
                send.set_exception(OSError("delivery failed"))
        await delivery.flush()
        assert acks.released == list(range(failing)), "the batches before the failed one only"
        assert delivery.broken
        assert not delivery.settled()
        await delivery.ack(acks(3))  # a later message, nothing to wait for
        await delivery.flush()
        assert acks.released == list(range(failing))
        assert not delivery.settled()

    run(body)


def test_fail_stops_every_ack_not_released_yet(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=1, max_age_s=NEVER)
        (send,) = futures(1)
        await delivery.ack(acks(0))
        await delivery.flush()
        delivery.track(send)
        await delivery.ack(acks(1))
        delivery.fail("offset check failed")
        delivery.fail("offset check failed again")
        send.set_result(None)
        await delivery.ack(acks(2))
        await delivery.flush()
        assert acks.released == [0]
        assert delivery.broken and not delivery.settled()

    with caplog.at_level(logging.ERROR, logger="clearance.worker"):
        run(body)
    assert len(caplog.records) == 1, "fail() logs once"


def test_flush_waits_for_every_batch_and_the_unsealed_rest() -> None:
    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=2, max_age_s=NEVER)
        loop = asyncio.get_running_loop()
        sends = futures(4)
        for n, send in enumerate(sends):
            loop.call_later(0.01 * (len(sends) - n), send.set_result, None)  # the last completes first
        for n in range(5):  # acks 0-1 and 2-3 sealed, 4 unsealed, send 3 tracked after it
            if n < 3:
                delivery.track(sends[n])
            await delivery.ack(acks(n))
        delivery.track(sends[3])
        assert not delivery.settled()
        await delivery.flush()
        assert all(send.done() for send in sends)
        assert acks.released == [0, 1, 2, 3, 4]
        assert delivery.settled()

    run(body)


def test_flush_settles_sends_that_no_ack_waits_for() -> None:
    async def body() -> None:
        delivery = Delivery(max_acks=1, max_age_s=NEVER)
        await delivery.flush()  # nothing at all
        assert delivery.settled()
        (send,) = futures(1)
        delivery.track(send)
        send.set_exception(OSError("changelog send failed"))
        await delivery.flush()
        assert delivery.broken and not delivery.settled()

    run(body)


Scenario = Callable[[Delivery], Awaitable[None]]


async def _nothing(delivery: Delivery) -> None:
    pass


def _tracked(outcome: str) -> Scenario:
    async def scenario(delivery: Delivery) -> None:
        (send,) = futures(1)
        delivery.track(send)
        if outcome == "delivered":
            send.set_result(None)
        elif outcome == "failed":
            send.set_exception(OSError("failed"))
        elif outcome == "cancelled":
            send.cancel()

    return scenario


async def _acked_pending(delivery: Delivery) -> None:
    delivery.track(futures(1)[0])
    await delivery.ack(lambda: None)  # max_acks=1: a sealed batch waits for the send


async def _acked_delivered_flushed(delivery: Delivery) -> None:
    (send,) = futures(1)
    delivery.track(send)
    await delivery.ack(lambda: None)
    send.set_result(None)
    await delivery.flush()


async def _acked_failed_flushed(delivery: Delivery) -> None:
    (send,) = futures(1)
    delivery.track(send)
    await delivery.ack(lambda: None)
    send.set_exception(OSError("failed"))
    await delivery.flush()


async def _ack_without_sends(delivery: Delivery) -> None:
    delivery.max_acks = 100
    await delivery.ack(lambda: None)


async def _revoked_pending(delivery: Delivery) -> None:
    delivery.max_acks = 100
    delivery.track(futures(1)[0])
    await delivery.ack(lambda: None)
    delivery.revoke()


async def _failed_by_hand(delivery: Delivery) -> None:
    delivery.fail("offset check failed")


@pytest.mark.parametrize(
    ("scenario", "settled"),
    [
        pytest.param(_nothing, True, id="nothing-tracked"),
        pytest.param(_tracked("pending"), False, id="send-in-flight"),
        pytest.param(_tracked("delivered"), True, id="send-delivered"),
        pytest.param(_tracked("failed"), False, id="send-failed-not-yet-sealed"),
        pytest.param(_tracked("cancelled"), False, id="send-cancelled"),
        pytest.param(_acked_pending, False, id="sealed-batch-waiting"),
        pytest.param(_acked_delivered_flushed, True, id="flushed-all-delivered"),
        pytest.param(_acked_failed_flushed, False, id="flushed-with-a-failed-send"),
        pytest.param(_ack_without_sends, True, id="ack-unreleased-but-no-send"),
        pytest.param(_revoked_pending, False, id="revoked-send-in-flight"),
        pytest.param(_failed_by_hand, False, id="fail-called"),
    ],
)
def test_settled(scenario: Scenario, settled: bool) -> None:
    async def body() -> None:
        delivery = Delivery(max_acks=1, max_age_s=NEVER)
        await scenario(delivery)
        await spin()
        assert delivery.settled() is settled

    run(body)


def test_release_seals_without_waiting_and_the_acks_follow_their_sends() -> None:
    """The quiet stream's timer: what is pending is sealed at once; its acks are released when
    the sends before them are delivered, with nobody waiting for them."""

    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=100, max_age_s=NEVER)
        (send,) = futures(1)
        delivery.track(send)
        await delivery.ack(acks(0))
        await delivery.ack(acks(1))
        delivery.release()  # returns at once: not a coroutine
        await spin()
        assert acks.released == [], "the send is not delivered yet"
        send.set_result(None)
        await spin()
        assert acks.released == [0, 1]
        assert delivery.settled()

    run(body)


def test_without_release_a_quiet_stream_s_acks_stay_pending() -> None:
    """What `release` is for: below max_acks and max_age_s nothing seals the batch."""

    async def body() -> None:
        acks, delivery = Acks(), Delivery(max_acks=100, max_age_s=NEVER)
        await delivery.ack(acks(0))
        await spin()
        assert acks.released == []
        delivery.release()
        await spin()
        assert acks.released == [0]

    run(body)
