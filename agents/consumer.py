"""Faust's Kafka consumer, without four tasks per message where nothing has to wait.

Faust's fetch loop (`Consumer._drain_messages`) hands each message to the conductor as
`await self.wait_first(callback(message), self.suspend_flow.wait())`: the message's callback
raced against a rebalance. mode's `Service.wait_first` makes a task of each awaitable and of
the service's `stopped` and `crashed` events, runs `asyncio.wait` over the four, and cancels
the three losers: four tasks, a wait and three cancellations per message, on the loop (14% of
the worker's GIL samples, the callback's own 9.5 included; one worker ran 1.4 to 1.55x as fast
without them, benchmarks/RESULTS.md). Yet the callback almost never waits: it takes the conductor's
lock, checks flow control and the producer buffer, and puts the event on its stream's queue,
all without suspending.

`Consumer.wait_first` here runs the first awaitable one step in place. If it finishes in that
step, nothing could have overtaken it, and the answer is the one mode would give (the
winner and its result, or "stopped" when the service is stopping or crashed; an error
raised). Otherwise it hands the started coroutine, from where it stopped, to mode's own
`wait_first` with the other awaitables, and the race is mode's, as before. Nothing else
changes: the same coroutines run in the same order, and Faust's code is not touched (a
subclass of the consumer its transport makes, given to the app's transport as its
`Consumer` class, the attribute Faust's transports create their consumer from).

Its thread's aiokafka consumer also asks the broker to gather input before it answers a fetch
(`fetch_min_bytes`, `fetch_max_wait_ms`, which Faust does not pass: aiokafka's 1 byte, Faust's
1.5 s). With 1 byte the broker answers as soon as anything arrives, so a worker that keeps up
with a trickle fetches a few records at a time, and each fetch costs ~2 ms of the GIL whatever
it carries (aiokafka builds and parses the request for every assigned partition in Python, and
Faust hands the result across threads): at 500 orders/s that was a fifth of a core, more than
at 1,000 (benchmarks/RESULTS.md, "The cost of a fetch").

And its fetch loop goes on as soon as a rebalance gives it partitions to read. Faust's
`_wait_next_records`, finding no active partition (the new assignment's are paused while its
tables recover), sleeps a whole second before it looks again. A worker that was already
running when a rebalance came (the first of two processes starting together, every worker
of a group another one joins) therefore read nothing for up to a second after it was ready:
1.0 s in case d, where the other process had been reading from 0.07 s after ready
(benchmarks/RESULTS.md). Here the loop waits, up to that same second, for a partition to be
resumed or assigned, and then fetches at once: its first message came 0.02 s after ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from types import CoroutineType
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer
from faust.types import TP
from mode import Service
from mode.services import WaitResults


class ConsumerThread(AIOKafkaConsumerThread):
    """The aiokafka driver's consumer thread; its aiokafka consumer gathers input per fetch
    (`gather`) when `fetch_min_bytes` is set (a subclass per app, `use_in`)."""

    fetch_min_bytes = 0  # 0: aiokafka's and Faust's own (1 byte, 1.5 s)
    fetch_wait_ms = 0

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        made = super()._create_worker_consumer(transport)
        if self.fetch_min_bytes > 0:
            gather(made, self.fetch_min_bytes, self.fetch_wait_ms)
        return made


class Consumer(KafkaConsumer):
    """The aiokafka driver's consumer; `wait_first` finishes in place what does not wait, and
    the fetch loop waits for partitions to read no longer than until they are there."""

    thread_class: type[ConsumerThread] = ConsumerThread
    idle_wait_s = 1.0  # Faust's own sleep when no partition is active: the longest wait here

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._activated = asyncio.Event()  # set when a partition becomes active
        super().__init__(*args, **kwargs)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        return await first_in_place(self, super().wait_first, coros, timeout)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        """Faust's, but with no partition active (a rebalance's, paused while the tables recover)
        wait until one is resumed or assigned, at most `idle_wait_s`, instead of sleeping all of it.
        Its first step is Faust's: while a rebalance holds the flow, wait for it to resume (the
        fetch loop is usually there when a rebalance comes, and found no partition after it)."""
        if not self.flow_active:  # a rebalance: Faust's own first step, before it looks for partitions
            await self.wait(self.can_resume_flow.wait())
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            self._activated.clear()
            await self.wait(self._activated.wait(), timeout=self.idle_wait_s)  # returns at a stop too
            if not self._get_active_partitions():
                return {}, self._get_active_partitions()  # what Faust's answers after its sleep
        return await super()._wait_next_records(timeout)

    def _set_active_tps(self, tps: set[TP]) -> set[TP]:
        active = super()._set_active_tps(tps)
        if active:
            self._activated.set()
        return active

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        super().resume_partitions(tps)
        if self._get_active_partitions():
            self._activated.set()

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)


def gather(consumer: AIOKafkaConsumer, min_bytes: int, wait_ms: int) -> None:
    """Have the broker answer `consumer`'s fetches once `min_bytes` of input are there, or after
    `wait_ms`. Before it starts: aiokafka's constructor keeps them, its `start()` gives them to
    the fetcher it makes (checked by tests/agents/test_consumer.py against the pinned aiokafka)."""
    consumer._fetch_min_bytes = min_bytes  # noqa: SLF001 - the constructor's own attribute
    consumer._fetch_max_wait_ms = wait_ms  # noqa: SLF001 - the constructor's own attribute


async def first_in_place(
    service: Service, wait_first: Callable[..., Awaitable[WaitResults]], coros: tuple[Any, ...], timeout: Any
) -> WaitResults:
    """`service.wait_first(*coros, timeout=timeout)` (mode's, given as `wait_first`), with the
    first coroutine run one step in place: if it finishes there, mode's answer without a task."""
    first = coros[0] if coros else None
    if type(first) is not CoroutineType:
        return await wait_first(*coros, timeout=timeout)
    try:
        yielded = first.send(None)
    except StopIteration as stop:
        _close(coros[1:])
        if service.should_stop:
            return WaitResults([], [], True)
        return WaitResults([first], [stop.value], False)
    except BaseException:
        _close(coros[1:])
        raise
    return await wait_first(_resume(first, yielded), *coros[1:], timeout=timeout)


def use_in(app: faust.App, fetch_min_bytes: int = 0, fetch_wait_ms: int = 0) -> None:
    """Make `app`'s consumer one of these (before anything has made it), whose fetches wait for
    `fetch_min_bytes` or `fetch_wait_ms` (0: aiokafka's 1 byte and Faust's 1.5 s)."""
    fetch = {"fetch_min_bytes": fetch_min_bytes, "fetch_wait_ms": fetch_wait_ms, "__module__": __name__}
    thread = type("ConsumerThread", (ConsumerThread,), fetch)
    consumer = type("Consumer", (Consumer,), {"thread_class": thread, "__module__": __name__})
    # Faust types it as the transport class's variable; set on this app's transport, for this app only.
    app.transport.Consumer = consumer  # type: ignore[misc]


def _close(others: tuple[Any, ...]) -> None:
    """The awaitables that will not run: coroutines closed (never awaited, without a warning)."""
    for other in others:
        if type(other) is CoroutineType:
            other.close()


class _Started:
    """A coroutine already run up to its first suspension (`yielded`), continued by whoever
    awaits this: what `yield from coro` would do from that point on."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in (a cancellation): passed on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Started(coro, yielded)
