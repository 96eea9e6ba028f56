"""agents.faust_internals.ack_refilled on a stand-in consumer: what Faust's commit needs of an
offset the offset check read directly (issue 13: commits stopped in front of such offsets)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.types import TP
from intervaltree import IntervalTree

from agents.faust_internals import ack_refilled


class Consumer:
    """The two things ack_refilled touches: Faust's gap tree and `ack`."""

    def __init__(self) -> None:
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self.acked: list[tuple[TP, int]] = []

    def ack(self, message: Any) -> bool:
        assert not message.acked and message.topic == message.tp.topic
        message.acked = True
        self.acked.append((message.tp, message.offset))
        return True


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


def test_an_offset_faust_never_saw_is_acked() -> None:
    app = App()
    for offset in (170, 171, 172):
        ack_refilled(app, "orders", 2, offset)  # type: ignore[arg-type]  # a stand-in App
    assert app.consumer.acked == [(TP("orders", 2), 170), (TP("orders", 2), 171), (TP("orders", 2), 172)]


def test_an_offset_faust_holds_as_a_gap_is_not_acked_twice() -> None:
    """Faust counts a gap as acked when it commits; an ack as well would count it twice."""
    app = App()
    app.consumer._gap[TP("orders", 2)].addi(171, 175)  # Faust's gap: offsets 171..174
    for offset in range(170, 176):
        ack_refilled(app, "orders", 2, offset)  # type: ignore[arg-type]  # a stand-in App
    assert [offset for _, offset in app.consumer.acked] == [170, 175]
    ack_refilled(app, "orders", 3, 172)  # type: ignore[arg-type]  # another partition: no gap there
    assert app.consumer.acked[-1] == (TP("orders", 3), 172)
