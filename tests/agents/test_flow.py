"""The merge queues' bound (issue 13): the join pauses an input topic partition whose merge
queue is full and resumes it once drained (agents/join.py `_bound`, pipeline/merge.py
`Merge.flow`), on a recording stand-in for the consumer; and agents/flow.py's InputFlow on
a stand-in Faust consumer: a held partition is not fetched but what was fetched still
arrives, and nothing is held or released against Faust's own pauses."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from agents.flow import InputFlow
from tests.agents.test_join import WAIT_MS, Harness
from tests.fixtures.docs import order, payment, waybill

BOUND = 4


class Recorder:
    """The join's Flow: records every pause and resume; `refuse` answers False (a rebalance)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.paused: set[str] = set()
        self.refuse = False

    def pause(self, topic: str, partition: int) -> bool:
        if self.refuse:
            return False
        if topic not in self.paused:  # a pause of a paused partition is asked again, and changes nothing
            self.calls.append(("pause", topic))
        self.paused.add(topic)
        return True

    async def resume(self, topic: str, partition: int) -> bool:
        if self.refuse:
            return False
        assert topic in self.paused, "resumed without a pause"
        self.calls.append(("resume", topic))
        self.paused.discard(topic)
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
        assert len(h.acked) == 30

    run(body, flow)


def test_a_pause_refused_during_a_rebalance_is_asked_again_and_so_is_a_resume() -> None:
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
        assert h.join.paused == 1, "not resumed while the consumer is rebalancing"
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


class Consumer:
    """Faust's consumer in what InputFlow touches, with Faust's own code for the flow control
    (faust/transport/consumer.py): the active set `getmany` fetches, `_buffered_partitions`
    (delivered, not fetched) and `_paused_partitions` (Faust's own pauses)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._active_partitions: set[TP] = {TP_PAY, TP_ORD}
        self._buffered_partitions: set[TP] = set()
        self._paused_partitions: set[TP] = set()

    def on_buffer_full(self, tp: TP) -> None:
        if not self.app.in_recovery:
            self._active_partitions.discard(tp)
            self._buffered_partitions.add(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        if tp in self._buffered_partitions:
            self._active_partitions.add(tp)
            self._buffered_partitions.discard(tp)

    def pause_partitions(self, tps: Any) -> None:  # Faust's, at a rebalance
        self._active_partitions.difference_update(tps)
        self._paused_partitions.update(tps)

    def delivered(self, tp: TP) -> bool:
        """Whether `getmany` hands a record of `tp` from a batch already fetched to the streams."""
        return tp in self._active_partitions or tp in self._buffered_partitions


class Recovery:
    def __init__(self) -> None:
        self.completed = asyncio.Event()
        self.completed.set()


class Tables:
    def __init__(self) -> None:
        self.recovery = Recovery()


class App:
    def __init__(self) -> None:
        self.in_recovery = False
        self.rebalancing = False
        self.tables = Tables()
        self.consumer = Consumer(self)


TP_PAY = TP("payments", 3)
TP_ORD = TP("orders", 3)


def test_input_flow_holds_the_fetch_and_still_delivers_what_was_fetched() -> None:
    """Faust's getmany drops the rest of a batch of a partition that `pause_partitions` took out
    of the active set (the soak: 500 to 2,000 records a pause, read again directly); a held
    partition is not fetched, and what was fetched before still arrives."""

    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        assert flow.pause("payments", 3)
        assert TP_PAY not in app.consumer._active_partitions, "not fetched"
        assert app.consumer.delivered(TP_PAY), "what was fetched still reaches the stream"
        assert await flow.resume("payments", 3)
        assert TP_PAY in app.consumer._active_partitions and not app.consumer._buffered_partitions

    asyncio.run(main())


def test_input_flow_leaves_faust_s_own_pauses_alone() -> None:
    """During a rebalance or a recovery Faust has paused every partition itself: no hold and,
    above all, no release of ours; a partition Faust paused stays paused after our release."""

    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        assert flow.pause("payments", 3)
        app.rebalancing = True
        app.consumer.pause_partitions({TP_PAY, TP_ORD})  # the rebalance begins
        assert not flow.pause("orders", 3)
        assert not await flow.resume("payments", 3)
        assert not app.consumer._active_partitions
        app.rebalancing = False
        app.tables.recovery.completed.clear()  # assigned, recovery running
        assert not await flow.resume("payments", 3)
        assert not app.consumer._active_partitions
        app.tables.recovery.completed.set()  # a hold from before the rebalance, released late
        assert await flow.resume("payments", 3)
        assert not app.consumer._active_partitions, "Faust's pause stays: its recovery resumes it"
        assert not app.consumer._buffered_partitions

    asyncio.run(main())
