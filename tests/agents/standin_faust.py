"""Stand-ins for where Faust keeps aiokafka's client, `app.consumer._thread._consumer`, and the
consumer thread's event loop, `app.consumer._thread.thread_loop` (agents/faust_internals.py)."""

from __future__ import annotations

from typing import Any


class ConsumerThread:
    def __init__(self, consumer: Any, thread_loop: Any = None) -> None:
        self._consumer = consumer
        self.thread_loop = thread_loop


class FaustConsumer:
    def __init__(self, thread: ConsumerThread | None) -> None:
        self._thread = thread


class App:
    def __init__(self, thread: ConsumerThread | None) -> None:
        self.consumer = FaustConsumer(thread)
