"""The merge queues' bound (issue 13): the join pauses an input topic partition whose merge
queue is full and resumes it once drained (agents/join.py `_bound`, pipeline/merge.py
`Merge.flow`), on a recording stand-in for the consumer; and agents/flow.py's InputFlow on
a stand-in Faust consumer: nothing during a rebalance, a seek back over the records
Faust's fetcher dropped when the partition was paused in the middle of a batch."""

from __future__ import annotations

import asyncio
from collections import defaultdict
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
    """What InputFlow uses of Faust's consumer: the public pause/resume/position/seek_wait and
    the fetcher's `_read_offset` (the last offset handed to the streams)."""

    def __init__(self) -> None:
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._paused_partitions: set[TP] = set()
        self._buffered_partitions: set[TP] = set()  # taken out of the fetch by Faust's stream-buffer flow control
        self.resumed: list[TP] = []
        self.positions: dict[TP, int] = {}
        self.seeks: list[dict[TP, int]] = []

    def pause_partitions(self, tps: Any) -> None:
        self._paused_partitions.update(tps)

    def resume_partitions(self, tps: Any) -> None:
        self.resumed += tps
        self._paused_partitions.difference_update(tps)

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(dict(partitions))
        self.positions.update(partitions)


class Recovery:
    def __init__(self) -> None:
        self.completed = asyncio.Event()
        self.completed.set()


class Tables:
    def __init__(self) -> None:
        self.recovery = Recovery()


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()
        self.tables = Tables()
        self.rebalancing = False


TP_PAY = TP("payments", 3)


def test_input_flow_pauses_and_resumes_on_the_consumer() -> None:
    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        app.consumer._read_offset[TP_PAY] = 41
        app.consumer.positions[TP_PAY] = 42  # nothing dropped: the position is right after it
        assert flow.pause("payments", 3)
        assert app.consumer._paused_partitions == {TP_PAY}
        assert await flow.resume("payments", 3)
        assert app.consumer._paused_partitions == set() and app.consumer.seeks == []
        assert app.consumer.resumed == [TP_PAY]

    asyncio.run(main())


def test_input_flow_seeks_back_over_what_faust_dropped_of_a_paused_batch() -> None:
    """Faust's getmany skips the rest of a batch of a partition paused while it walks through
    it, and the consumer's position is past those records: the resume reads them again."""

    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        assert flow.pause("payments", 3)
        app.consumer._read_offset[TP_PAY] = 41
        app.consumer.positions[TP_PAY] = 97  # 42..96 fetched, never handed over
        assert await flow.resume("payments", 3)
        assert app.consumer.seeks == [{TP_PAY: 42}]
        assert TP_PAY not in app.consumer._paused_partitions

    asyncio.run(main())


def test_input_flow_leaves_faust_s_own_pauses_alone() -> None:
    """During a rebalance or a recovery Faust has paused every partition itself: no pause and,
    above all, no resume of ours; the join keeps asking until it may (or forgets at the rebalance)."""

    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        assert flow.pause("payments", 3)
        app.rebalancing = True
        app.consumer._paused_partitions.add(TP("orders", 3))  # Faust's own
        assert not flow.pause("waybills", 3)
        assert not await flow.resume("payments", 3)
        assert app.consumer._paused_partitions == {TP_PAY, TP("orders", 3)}
        app.rebalancing = False
        app.tables.recovery.completed.clear()  # assigned, recovery running
        assert not await flow.resume("payments", 3)
        assert TP_PAY in app.consumer._paused_partitions
        assert "orders" not in {tp.topic for seek in app.consumer.seeks for tp in seek}

    asyncio.run(main())


def test_input_flow_leaves_a_partition_to_faust_s_stream_buffer_flow_control() -> None:
    """A partition Faust's conductor took out of the fetch (its stream buffer under pressure,
    `on_buffer_full`) is not made active by our resume: only our pause is dropped, and
    Faust's `on_buffer_drop` puts it back."""

    async def main() -> None:
        app = App()
        flow = InputFlow(app)  # type: ignore[arg-type]  # a stand-in App
        app.consumer._buffered_partitions.add(TP_PAY)
        assert flow.pause("payments", 3)
        assert await flow.resume("payments", 3)
        assert app.consumer.resumed == [] and TP_PAY not in app.consumer._paused_partitions
        assert app.consumer._buffered_partitions == {TP_PAY}

    asyncio.run(main())
