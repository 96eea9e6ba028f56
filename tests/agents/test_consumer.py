"""agents.consumer: `wait_first` gives mode's answer, finishing in place what does not wait and
leaving the race to mode's own `wait_first` from the first suspension on.

The consumer's `wait_first` is `first_in_place` over mode's `Service.wait_first`; these tests
run it on a plain mode service (a Faust consumer starts a thread with an event loop of its own
as it is made, which a unit test would have to stop)."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from mode import Service
from mode.services import WaitResults

from agents.app import build
from agents.consumer import Consumer, ConsumerThread, first_in_place, gather
from clearance.settings import Settings


class _Service(Service):
    """What the consumer's `wait_first` reads: a mode service, and Faust's `suspend_flow` event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


Body = Callable[[_Service, list[str]], Awaitable[Any]]


async def _ours(service: _Service, *coros: Any, timeout: Any = None) -> WaitResults:
    return await first_in_place(service, service.wait_first, coros, timeout)


async def _modes(service: _Service, *coros: Any, timeout: Any = None) -> WaitResults:
    return await service.wait_first(*coros, timeout=timeout)


def _run(tmp_path: Path, body: Body) -> tuple[Any, list[str]]:
    """`body(consumer, log)` on a consumer of a fresh app (nothing connects), on a loop of its own."""

    async def main() -> Any:
        return await body(_Service(), log)

    log: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a coroutine never awaited fails the test
        return asyncio.run(main()), log


def _both(tmp_path: Path, make: Callable[[_Service, list[str]], tuple[Any, ...]]) -> list[tuple[Any, list[str]]]:
    """The same awaitables through ours and through mode's `wait_first` (the answer without winners' identity)."""

    def through(wait_first: Callable[..., Awaitable[Any]]) -> Body:
        async def body(consumer: _Service, log: list[str]) -> Any:
            result = await wait_first(consumer, *make(consumer, log))
            return (len(result.done), result.results, result.stopped)

        return body

    return [_run(tmp_path, through(_ours)), _run(tmp_path, through(_modes))]


async def _step(log: list[str], value: str) -> str:
    log.append("ran")
    return value


async def _suspends(log: list[str], value: str) -> str:
    log.append("started")
    await asyncio.sleep(0)
    log.append("resumed")
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, value)
    got = await future  # a value sent back in through the started coroutine
    log.append(f"got {got}")
    return got


async def _blocked(log: list[str], gate: asyncio.Event) -> None:
    """A callback that waits (for a gate nobody opens) and records its cancellation."""
    log.append("waiting")
    try:
        await gate.wait()
    except asyncio.CancelledError:
        log.append("cancelled")
        raise


def test_the_worker_app_makes_this_consumer(tmp_path: Path) -> None:
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2)
    made = build(settings).app.transport.Consumer  # what Transport.create_consumer makes
    assert issubclass(made, Consumer) and issubclass(made.thread_class, ConsumerThread)


@pytest.mark.parametrize(
    ("min_kb", "wait_ms", "expected"), [(64, 50, (65_536, 50)), (8, 5, (8_192, 5)), (0, 50, (1, 1_500))]
)
def test_the_broker_gathers_input_for_each_fetch_as_configured(
    tmp_path: Path, min_kb: int, wait_ms: int, expected: tuple[int, int]
) -> None:
    """CLEARANCE_FETCH_MIN_KB and CLEARANCE_FETCH_WAIT_MS reach the aiokafka consumer Faust's
    thread makes; 0 leaves aiokafka's 1 byte and Faust's 1.5 s."""
    settings = Settings.from_env().with_overrides(
        data_dir=str(tmp_path), partitions=2, fetch_min_kb=min_kb, fetch_wait_ms=wait_ms
    )
    app = build(settings).app

    async def made() -> tuple[int, int]:
        thread = app.consumer._thread  # type: ignore[attr-defined]  # noqa: SLF001 - the thread Faust's consumer delegates to
        assert isinstance(thread, ConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)  # noqa: SLF001 - what its start() makes
        try:
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms  # noqa: SLF001
        finally:
            await consumer.stop()  # never started: closes its client

    assert asyncio.run(made()) == expected


def test_aiokafka_gives_the_fetcher_what_gather_sets() -> None:
    """`gather` sets two attributes of aiokafka's consumer before it starts; its start() makes the
    fetcher with them. A newer aiokafka that renamed them would fail here, not gather nothing."""
    source = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in source
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source

    async def made() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        gather(consumer, 4_096, 7)
        try:
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms  # noqa: SLF001
        finally:
            await consumer.stop()

    assert asyncio.run(made()) == (4_096, 7)


def test_a_callback_that_does_not_wait_finishes_in_place_with_modes_answer(tmp_path: Path) -> None:
    ours, modes = _both(tmp_path, lambda c, log: (_step(log, "v"), c.suspend_flow.wait()))
    assert ours == modes == ((1, ["v"], False), ["ran"])


def test_in_place_it_makes_no_task(tmp_path: Path) -> None:
    async def body(consumer: _Service, log: list[str]) -> Any:
        before = len(asyncio.all_tasks())
        result = await _ours(consumer, _step(log, "v"), consumer.suspend_flow.wait())
        return result.results, len(asyncio.all_tasks()) - before

    assert _run(tmp_path, body)[0] == (["v"], 0)


def test_a_callback_that_waits_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    ours, modes = _both(tmp_path, lambda c, log: (_suspends(log, "w"), c.suspend_flow.wait()))
    assert ours == modes == ((1, ["w"], False), ["started", "resumed", "got w"])


def test_a_rebalance_wins_against_a_callback_that_waits_and_it_is_cancelled(tmp_path: Path) -> None:
    async def rebalance(consumer: _Service) -> bool:
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()
        return True

    def make(consumer: _Service, log: list[str]) -> tuple[Any, ...]:
        return (_blocked(log, asyncio.Event()), rebalance(consumer))

    ours, modes = _both(tmp_path, make)
    assert ours == modes == ((1, [True], False), ["waiting", "cancelled"])


@pytest.mark.parametrize("where", ["in place", "after waiting"])
def test_an_error_of_the_callback_is_raised_as_mode_raises_it(tmp_path: Path, where: str) -> None:
    async def fails(log: list[str]) -> None:
        if where == "after waiting":
            await asyncio.sleep(0)
        log.append("raising")
        raise ValueError("bad message")

    for wait_first in (_ours, _modes):

        async def body(consumer: _Service, log: list[str], wait_first: Any = wait_first) -> Any:
            other = consumer.suspend_flow.wait()
            with pytest.raises(ValueError, match="bad message"):
                await wait_first(consumer, fails(log), other)
            await asyncio.sleep(0)  # mode's: the loser's task takes its cancellation
            return inspect.getcoroutinestate(other)

        state, log = _run(tmp_path, body)
        assert log == ["raising"]
        assert state == inspect.CORO_CLOSED  # ours closed it, or mode's task ended it: never left unawaited


def test_a_stopping_consumer_answers_stopped_after_the_callback_ran(tmp_path: Path) -> None:
    def make(consumer: _Service, log: list[str]) -> tuple[Any, ...]:
        consumer._stopped.set()  # what Service.stop sets first
        return (_step(log, "v"), consumer.suspend_flow.wait())

    ours, modes = _both(tmp_path, make)
    assert ours == modes == ((0, [], True), ["ran"])


def test_the_loser_in_place_is_closed_not_left_unawaited(tmp_path: Path) -> None:
    async def body(consumer: _Service, log: list[str]) -> Any:
        other = consumer.suspend_flow.wait()
        await _ours(consumer, _step(log, "v"), other)
        return inspect.getcoroutinestate(other)

    assert _run(tmp_path, body)[0] == inspect.CORO_CLOSED


def test_anything_but_a_coroutine_first_goes_to_modes_wait_first(tmp_path: Path) -> None:
    async def body(consumer: _Service, log: list[str]) -> Any:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        result = await _ours(consumer, event, timeout=5)  # an event: mode waits on its .wait()
        return result.results, result.stopped

    assert _run(tmp_path, body)[0] == ([True], False)


def test_the_outer_task_cancelled_cancels_the_started_callback(tmp_path: Path) -> None:
    async def body(consumer: _Service, log: list[str]) -> Any:
        task = asyncio.ensure_future(_ours(consumer, _blocked(log, asyncio.Event()), consumer.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # the callback's own task takes its cancellation
        return None

    assert _run(tmp_path, body)[1] == ["waiting", "cancelled"]


def _idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Consumer, list[float], list[set[TP]]]:
    """The worker app's consumer with no partition active, as while a rebalance's tables recover: its
    fetches (`_getmany`) and Faust's own sleeps recorded instead of done."""
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2)
    consumer = build(settings).app.consumer
    assert isinstance(consumer, Consumer)
    slept: list[float] = []
    fetched: list[set[TP]] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def getmany(active_partitions: set[TP], timeout: float) -> dict[TP, list[Any]]:
        fetched.append(set(active_partitions))
        return {}

    monkeypatch.setattr(consumer, "sleep", sleep)
    monkeypatch.setattr(consumer, "_getmany", getmany)
    consumer.idle_wait_s = 60.0  # a wait that ends sooner ended because a partition came
    assert consumer.flow_active and not consumer._get_active_partitions()  # noqa: SLF001
    return consumer, slept, fetched


def _on_its_loop(consumer: Any, body: Awaitable[Any]) -> Any:
    """`body` on the loop the consumer's service waits on (mode's futures are made on it)."""
    return consumer.loop.run_until_complete(asyncio.wait_for(body, 5.0))


def test_a_partition_resumed_while_none_is_active_is_fetched_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's fetch loop, finding no active partition, sleeps a second before it looks again;
    this one fetches the partition resumed meanwhile, with no sleep."""
    consumer, slept, fetched = _idle(tmp_path, monkeypatch)
    tp = TP("clearance.orders", 1)

    async def main() -> Any:
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))  # noqa: SLF001
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing to read yet: it waits
        consumer.resume_partitions({tp})
        return await waiting

    records, active = _on_its_loop(consumer, main())
    assert (records, active) == ({}, {tp})
    assert fetched == [{tp}]
    assert slept == []


def test_after_a_rebalance_the_partitions_resumed_are_fetched_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case that cost a second: the fetch loop waits while a rebalance holds the flow; the
    flow resumes before the recovery resumes the partitions. Faust's loop then found none active
    and slept a second; this one fetches them as soon as they are resumed."""
    consumer, slept, fetched = _idle(tmp_path, monkeypatch)
    tp = TP("clearance.waybills", 1)
    consumer.stop_flow()  # what a rebalance does first

    async def main() -> Any:
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))  # noqa: SLF001
        await asyncio.sleep(0.01)
        assert not waiting.done()  # the flow is held
        consumer.resume_flow()  # the recovery: "Resuming flow...", then the stream partitions
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing active yet
        consumer.resume_partitions({tp})
        return await waiting

    assert _on_its_loop(consumer, main()) == ({}, {tp})
    assert fetched == [{tp}] and slept == []


def test_a_partition_assigned_while_none_is_active_is_fetched_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, slept, fetched = _idle(tmp_path, monkeypatch)
    tp = TP("clearance.payments", 0)

    async def main() -> Any:
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))  # noqa: SLF001
        await asyncio.sleep(0.01)
        assert not waiting.done()
        consumer._set_active_tps({tp})  # noqa: SLF001 - what on_partitions_assigned does
        return await waiting

    assert _on_its_loop(consumer, main()) == ({}, {tp})
    assert fetched == [{tp}] and slept == []


def test_with_none_active_it_answers_as_faust_after_its_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Still nothing to read once the wait is over: no fetch, Faust's answer (no records, the
    empty set), and the loop asks again."""
    consumer, slept, fetched = _idle(tmp_path, monkeypatch)
    consumer.idle_wait_s = 0.02

    assert _on_its_loop(consumer, consumer._wait_next_records(1.0)) == ({}, set())  # noqa: SLF001
    assert fetched == [] and slept == []


def test_a_stop_ends_the_wait_for_partitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, _slept, fetched = _idle(tmp_path, monkeypatch)

    async def main() -> Any:
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))  # noqa: SLF001
        await asyncio.sleep(0.01)
        assert not waiting.done()
        consumer._stopped.set()  # noqa: SLF001 - what the service's stop sets
        return await waiting

    assert _on_its_loop(consumer, main()) == ({}, set())
    assert fetched == []


def test_fausts_fetch_loop_still_asks_wait_next_records_and_sleeps_a_second_without_partitions() -> None:
    """The override takes the place of a private method of Faust's consumer: a newer Faust that
    stopped calling it, or stopped sleeping there, would leave it dead code; this fails instead."""
    assert issubclass(Consumer, FaustConsumer)
    assert "await self._wait_next_records(timeout)" in inspect.getsource(FaustConsumer.getmany)
    assert "await self.sleep(1)" in inspect.getsource(FaustConsumer._wait_next_records)  # noqa: SLF001
