"""The merge queues' bound (issue 13): the join pauses an input topic partition whose merge
queue is full and resumes it once drained (agents/join.py `_bound`, pipeline/merge.py
`Merge.flow`), on a recording stand-in for the consumer; and agents/flow.py's InputFlow on
stand-ins for Faust's consumer thread and aiokafka: a hold is aiokafka's pause, applied in
the consumer's thread, only to a partition assigned then."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.structs import TopicPartition as AIOTopicPartition

from agents.flow import InputFlow
from tests.agents.standin_faust import App, ConsumerThread
from tests.agents.test_join import PARTITION, WAIT_MS, Harness
from tests.fixtures.docs import order, payment, waybill

BOUND = 4


class Recorder:
    """The join's Flow: records every change of hold; `refuse` answers False (consumer not running)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.paused: set[str] = set()
        self.refuse = False

    def hold(self, topic: str, partition: int, held: bool) -> bool:
        assert partition == PARTITION
        if self.refuse:
            return False
        if held != (topic in self.paused):
            self.calls.append(("pause" if held else "resume", topic))
        (self.paused.add if held else self.paused.discard)(topic)
        return True


def run(test: Any, flow: Recorder) -> None:
    async def main() -> None:
        await test(Harness(flow=flow, merge_buffer=BOUND))

    asyncio.run(main())


def _no(n: int) -> str:
    return f"PK{n:04d}"


def test_a_topic_read_ahead_is_paused_while_the_merge_waits_for_the_orders() -> None:
    """The backlog of the soak, in small: payments and waybills arrive far ahead of their
    orders, which the broker still holds. Their queues are paused at the bound; the orders
    topic, the one the merge waits for, never is. The orders come, every window completes,
    and the paused topics are resumed once their queues have drained to half."""
    flow = Recorder()

    async def body(h: Harness) -> None:
        h.unread = {"orders"}
        for n in range(10):
            await h.feed("payments", payment(_no(n), f"202611110001{n:02d}"))
            await h.feed("waybills", waybill(_no(n), f"202611110002{n:02d}"))
        assert flow.calls == [("pause", "payments"), ("pause", "waybills")]
        assert h.join.paused == 2 and h.join.buffered == 20
        # a paused topic's tail is not read beside the consumer (agents/sequence.py `stalled`)
        assert h.join.unpaused(PARTITION) == ["orders"]
        assert h.join.unpaused(PARTITION + 1) == ["orders", "payments", "waybills"], "a partition not seen yet"
        assert h.declarations() == [] and not h.acked
        h.unread = set()
        for n in range(10):
            await h.feed("orders", order(_no(n), f"202611110000{n:02d}"))
        h.wall += WAIT_MS
        await h.tick()
        await h.settle()
        assert h.candidates() == [_no(n) for n in range(10)], "every window completed, in order"
        assert flow.calls[2:] == [("resume", "payments"), ("resume", "waybills")]
        assert "orders" not in {topic for _, topic in flow.calls}
        assert h.join.paused == 0 and h.join.buffered == 0
        assert h.join.unpaused(PARTITION) == ["orders", "payments", "waybills"]
        assert len(h.acked) == 30

    run(body, flow)


class Asked(Recorder):
    """Counts every hold the join asks for, a change or not."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def hold(self, topic: str, partition: int, held: bool) -> bool:
        self.asked += 1
        return super().hold(topic, partition, held)


def test_the_timer_s_tick_tells_the_consumer_every_hold_again_a_watermark_does_not() -> None:
    """Each hold told again is a call into Faust's consumer thread; the replay's watermarks come
    five times a second per partition, the timer's tick once, which suffices to put right a hold
    that crossed a rebalance."""
    flow = Asked()

    async def body(h: Harness) -> None:
        await h.feed("orders", order(_no(1), "20261111000000"))
        before = flow.asked
        await h.through("20261111000000", {"orders": 1, "payments": 0, "waybills": 0})
        await h.ended("payments", 0)
        assert flow.asked == before
        await h.tick()
        assert flow.asked == before + 3, "one for each input topic"

    run(body, flow)


def test_a_hold_or_release_not_done_is_asked_again() -> None:
    flow = Recorder()

    async def body(h: Harness) -> None:
        flow.refuse = True
        for n in range(BOUND + 1):
            await h.feed("payments", payment(_no(n), f"202611110001{n:02d}"))
        assert flow.calls == [] and h.join.paused == 0
        flow.refuse = False
        await h.feed("payments", payment(_no(9), "20261111000199"))
        assert flow.calls == [("pause", "payments")] and h.join.paused == 1
        for n in range(BOUND - 1):
            await h.feed("orders", order(_no(n), f"202611110000{n:02d}"))
            await h.feed("waybills", waybill(_no(n), f"202611110002{n:02d}"))
        flow.refuse = True
        h.wall += WAIT_MS
        await h.tick()
        assert h.join.buffered == 0, "all applied once the orders topic was silent with nothing unread"
        assert h.join.paused == 1, "not released while the consumer cannot take it"
        flow.refuse = False
        await h.tick()
        assert flow.calls[-1] == ("resume", "payments") and h.join.paused == 0

    run(body, flow)


def test_a_rebalance_forgets_the_pauses() -> None:
    """Faust pauses every partition when a rebalance begins and its recovery resumes them."""
    flow = Recorder()

    async def body(h: Harness) -> None:
        for n in range(BOUND):
            await h.feed("waybills", waybill(_no(n), f"202611110002{n:02d}"))
        assert h.join.paused == 1
        h.join.forget_partitions()
        assert h.join.paused == 0 and h.join.buffered == 0

    run(body, flow)


def test_without_a_bound_nothing_is_paused() -> None:
    flow = Recorder()

    async def body(h: Harness) -> None:
        for n in range(20):
            await h.feed("waybills", waybill(_no(n), f"202611110002{n:02d}"))
        assert flow.calls == [] and h.join.buffered == 20

    async def main() -> None:
        await body(Harness(flow=flow, merge_buffer=0))

    asyncio.run(main())


class AIOKafkaConsumer:
    """aiokafka's consumer in what `hold_fetch` uses: assignment, paused, pause, resume."""

    def __init__(self, assigned: set[AIOTopicPartition]) -> None:
        self.assigned = assigned
        self._paused: set[AIOTopicPartition] = set()
        self.calls: list[tuple[str, AIOTopicPartition]] = []

    def assignment(self) -> set[AIOTopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[AIOTopicPartition]:
        return set(self._paused)

    def pause(self, *tps: AIOTopicPartition) -> None:
        assert all(isinstance(tp, AIOTopicPartition) for tp in tps), "aiokafka takes its own TopicPartition"
        self.calls += [("pause", tp) for tp in tps]
        self._paused.update(tps)

    def resume(self, *tps: AIOTopicPartition) -> None:
        self.calls += [("resume", tp) for tp in tps]
        self._paused.difference_update(tps)


class ThreadLoop:
    """The consumer thread's event loop: runs what it is handed, in order, when told to."""

    def __init__(self) -> None:
        self.handed: list[tuple[Any, tuple[Any, ...]]] = []

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        self.handed.append((fn, args))

    def is_closed(self) -> bool:
        return False

    def run(self) -> None:
        handed, self.handed = self.handed, []
        for fn, args in handed:
            fn(*args)


PAY = AIOTopicPartition("payments", 3)
ORD = AIOTopicPartition("orders", 3)


def _app() -> tuple[InputFlow, AIOKafkaConsumer, ThreadLoop]:
    kafka = AIOKafkaConsumer({PAY, ORD})
    loop = ThreadLoop()
    return InputFlow(App(ConsumerThread(kafka, loop))), kafka, loop  # type: ignore[arg-type]  # a stand-in App


def test_a_hold_is_aiokafka_s_pause_in_the_consumer_thread() -> None:
    flow, kafka, loop = _app()
    assert flow.hold("payments", 3, True)
    assert kafka.calls == [], "applied in the consumer's thread, not here"
    loop.run()
    assert kafka.paused() == {PAY}
    assert flow.hold("payments", 3, True) and flow.hold("orders", 3, False)
    loop.run()
    assert kafka.calls == [("pause", PAY)], "told again (every tick), changed only when it differs"
    assert flow.hold("payments", 3, False)
    loop.run()
    assert kafka.paused() == set() and kafka.calls[-1] == ("resume", PAY)


def test_a_hold_that_crosses_a_rebalance_changes_nothing_assigned_since() -> None:
    """Handed over before a rebalance, applied after it: the partition is not assigned then
    (or is, with a fresh unpaused state, and the join's next tick tells it again)."""
    flow, kafka, loop = _app()
    assert flow.hold("payments", 3, True)
    kafka.assigned = {ORD}
    loop.run()
    assert kafka.calls == [] and kafka.paused() == set()


def test_no_hold_without_a_running_consumer() -> None:
    flow = InputFlow(App(None))  # type: ignore[arg-type]  # a stand-in App
    assert not flow.hold("payments", 3, True)
