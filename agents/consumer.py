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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer
from mode import Service
from mode.services import WaitResults


class Consumer(KafkaConsumer):
    """The aiokafka driver's consumer; `wait_first` finishes in place what does not wait."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        return await first_in_place(self, super().wait_first, coros, timeout)


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


def use_in(app: faust.App) -> None:
    """Make `app`'s consumer one of these (before anything has made it)."""
    # Faust types it as the transport class's variable; set on this app's transport, for this app only.
    app.transport.Consumer = Consumer  # type: ignore[misc]


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
