"""Faust's producer buffer, asked once per message whether it has ebbed, answered from its length.

Faust's conductor awaits `app.producer.buffer.wait_until_ebb()` for every message it hands to
a stream, so that a stream whose table writes fill the buffer waits until it has drained
(`ProducerBuffer.wait_until_ebb`). Its `size` reads the `producer_threaded` setting through
Faust's settings registry on every call to choose the queue it counts: 2.1% of the worker's GIL
samples (case c, 5 December), for a buffer that stays empty here, since every record of ours
goes through librdkafka (agents/producer.py) and none through Faust's producer.

`Buffer` reads that setting once, and counts the same queue with `qsize()`. Above the same
limit it does what Faust's does (its own `wait_until_ebb`, which flushes down to the limit),
so nothing changes but the cost of asking. Faust's code is not touched: the app's transport
makes its producer from its `Producer` class attribute (as it makes its consumer,
agents/consumer.py); the subclass here puts a `Buffer` where Faust's producer put its own,
before anything has started or used it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.transport.drivers.aiokafka import Producer as KafkaProducer
from faust.transport.producer import ProducerBuffer
from faust.types import TransportT


class Buffer(ProducerBuffer):
    """Faust's producer buffer; `wait_until_ebb` returns at once while it is within its limit."""

    _queued: asyncio.Queue[Any] | None = None  # the queue `size` counts, once known

    async def wait_until_ebb(self) -> None:
        queued = self._queued
        if queued is None:
            # as ProducerBuffer.size: the threaded producer's queue (made on the first put), else `pending`
            queued = self.queue if self.app is not None and self.app.conf.producer_threaded else self.pending
            if queued is None:  # threaded, nothing put yet: nothing to wait for
                return
            self._queued = queued
        if queued.qsize() > self.max_messages:
            await super().wait_until_ebb()


class Producer(KafkaProducer):
    """The aiokafka driver's producer, with a `Buffer` in place of Faust's."""

    def __init__(self, transport: TransportT, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(transport, loop=loop, **kwargs)
        made = cast(ProducerBuffer, self.buffer)
        buffer = Buffer(loop=self.loop, beacon=self.beacon)
        if getattr(made, "threaded_producer", None) is not None:
            buffer.threaded_producer = made.threaded_producer
        buffer.app = made.app
        self.buffer = buffer


def use_in(app: faust.App) -> None:
    """Make `app`'s producer one of these (before anything has made it)."""
    # Faust types it as the transport class's variable; set on this app's transport, for this app only.
    app.transport.Producer = Producer  # type: ignore[misc]
