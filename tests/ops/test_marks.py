"""ops.marks without a broker: a replay's time marks against a fake producer and admin client."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from clearance.clock import wall_ms
from clearance.settings import Settings
from ops.marks import Watermarks


class FakeProducer:
    """What `Watermarks` and `replay` call of a confluent-kafka producer: every produce recorded."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes, int, int | None]] = []  # topic, value, timestamp, partition

    def produce(self, topic: str, value: bytes, key: bytes | None, timestamp: int, **extra: Any) -> None:
        self.produced.append((topic, value, timestamp, extra.get("partition")))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class _Admin:
    """An admin client whose ListOffsets answers when the test says (`answer`)."""

    def __init__(self, config: Any) -> None:
        self.pending: list[Future[Any]] = []

    def list_offsets(self, wanted: dict[Any, Any], request_timeout: float) -> dict[Any, Future[Any]]:
        futures: dict[Any, Future[Any]] = {tp: Future() for tp in wanted}
        self.pending += futures.values()
        return futures

    def answer(self, offset: int) -> None:
        for future in self.pending:
            future.set_result(SimpleNamespace(offset=offset))
        self.pending = []


def _watermarks(monkeypatch: pytest.MonkeyPatch) -> tuple[Watermarks, FakeProducer]:
    monkeypatch.setattr("ops.marks.AdminClient", _Admin)
    monkeypatch.setattr("ops.marks.partition_count", lambda producer, topic, settings: 2)
    producer = FakeProducer()
    marks = Watermarks(producer, Settings(), 0.0, lambda err, msg: None)  # type: ignore[arg-type]
    return marks, producer


def _marks(producer: FakeProducer) -> list[tuple[int, int]]:
    """(through, timestamp) of every time-mark tick produced."""
    ticks = [
        (orjson.loads(value), stamp) for topic, value, stamp, _ in producer.produced if topic == Settings().topic_ticks
    ]
    return [(tick["through"], stamp) for tick, stamp in ticks if "through" in tick]


def test_a_mark_stays_below_a_message_on_its_way_whose_app_time_is_earlier_than_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trace out of appTime order (a line earlier than the one before it): the message at
    2000 is not delivered, the one at 1500 after it is on its way too; a mark up to 1999
    would promise the 1500 one delivered below the ends the broker gives now."""
    marks, producer = _watermarks(monkeypatch)
    marks.produced(1000)(None, None)
    marks.produced(2000)
    marks.produced(1500)
    assert marks.due(3000) == 0  # asked; the broker has not answered
    marks.admin.answer(7)  # type: ignore[attr-defined]
    assert marks.due(3000) == 2  # one tick per partition
    assert [through for through, _ in _marks(producer)] == [1499, 1499]


def test_a_mark_stays_below_what_was_produced_between_its_question_and_its_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked at 1999 (everything before 2000 delivered); then a line of 1200 is produced before
    the broker answers: it may be beyond the ends of the answer, so the mark is 1199."""
    marks, producer = _watermarks(monkeypatch)
    marks.produced(1000)(None, None)
    assert marks.due(2000) == 0
    marks.produced(1200)
    marks.admin.answer(7)  # type: ignore[attr-defined]
    assert marks.due(2500) == 2
    assert [through for through, _ in _marks(producer)] == [1199, 1199]
    assert marks.due(2600) == 0, "the 1200 line not delivered: no later mark"


def test_in_app_time_order_a_mark_is_the_first_undelivered_message_s_app_time_and_later_messages_are_stamped_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marks, producer = _watermarks(monkeypatch)
    for time_ms in (1000, 2000):
        marks.produced(time_ms)(None, None)
    marks.produced(3000)
    marks.due(4000)
    marks.admin.answer(7)  # type: ignore[attr-defined]
    assert marks.due(4000) == 2
    (through, stamp), _ = _marks(producer)
    assert through == 2999
    assert wall_ms() > stamp, (
        "a message produced after the mark has a later timestamp (the worker's sent_ms <= made_ms)"
    )


def test_a_wall_clock_that_does_not_move_holds_the_replay_after_a_mark_a_few_milliseconds_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Waiting for the wall clock to pass the mark's millisecond is bounded (a clock stepped back)."""
    marks, producer = _watermarks(monkeypatch)
    monkeypatch.setattr("ops.marks.wall_ms", lambda: 1_000)
    marks.produced(1000)(None, None)
    marks.due(2000)
    marks.admin.answer(7)  # type: ignore[attr-defined]
    done = threading.Event()

    def mark() -> None:
        marks.due(3000)
        done.set()

    threading.Thread(target=mark, daemon=True).start()
    assert done.wait(5.0), "the replay waited for a wall clock that did not move"
    assert [through for through, _ in _marks(producer)] == [1999, 1999]
