"""The worker's one producer: librdkafka (confluent-kafka), with asyncio futures for delivery.

Every record the worker writes goes through it: declarations, candidates, watermarks, dead
letters, ticks and its tables' changelog records (agents/changelog.py). Faust's own
path (`Topic.send` -> its ProducerBuffer, one record at a time -> aiokafka's pure-Python
producer) cost ~0.3-0.5 ms per record and was most of the worker's per-event cost
(issue 12); `produce()` here is a few microseconds and librdkafka batches in C.

A thread polls librdkafka for delivery reports. The records of the agents' ack batches
(declarations, candidates, watermarks, dead letters, changelog records) are counted into
a `Tally`, one per batch, that the reports count down; the batch's one future is resolved
in the event loop when the last report is in. Other records (ticks, hand-over records)
get a future each; their reports are handed to the event loop in batches (one
`call_soon_threadsafe` per batch, not per record). Both feed the delivery-gated acks
(agents/acks.py): no input offset is acked before every record it caused is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _RdKafka

log = logging.getLogger("clearance.worker")

Headers = Sequence[tuple[str, bytes]]
_POLL_S = 0.05
_FULL_WAIT_S = 0.005


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where a record landed."""

    topic: str
    partition: int
    offset: int


class ProduceError(RuntimeError):
    """A record was not delivered (librdkafka gave up on it)."""


class Tally:
    """The delivery reports of a batch of records, counted: one object per batch where a
    future and a closure per record cost ~5 us each in the event loop, and a hand-over of
    every report into it (issue 12).

    `Producer.count(t, ...)` counts a record in, and librdkafka reports its delivery by
    calling the tally (in the poll thread, or in whichever thread flushes). `seal()` closes
    the count and gives a future, resolved in the event loop once every record counted in
    has been reported: with the tally itself, or with `ProduceError` when any record was
    not delivered. `sent` is written only in the event loop, before the seal; a report and
    the seal each take the tally's lock, so whichever of the seal and the last report
    comes second sees both and resolves the future, and two threads serving reports at
    once (a flush beside the poll thread) cannot lose a count. (CPython 3.11 switches
    threads only at calls and backward jumps, so an unlocked count held in a test of
    400,000 reports from two threads; the lock keeps it right without relying on that.) With `offsets`, the highest
    delivered offset of each (topic, partition) is kept too (the changelogs' persisted
    offsets, agents/changelog.py)."""

    __slots__ = ("_future", "_lock", "_loop", "_sealed", "error", "failed", "highest", "reported", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, offsets: bool = False) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._future: asyncio.Future[Tally] | None = None
        self._sealed = False
        self.sent = 0
        self.reported = 0
        self.failed = 0
        self.error = ""
        self.highest: dict[tuple[str, int], int] | None = {} if offsets else None

    def __call__(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report of one record (the poll thread, or a flush)."""
        where = None if err is not None or self.highest is None else ((msg.topic(), msg.partition()), msg.offset())
        with self._lock:
            if err is not None:
                if not self.failed:
                    self.error = _describe(err)
                self.failed += 1
            elif where is not None and self.highest is not None and where[1] > self.highest.get(where[0], -1):
                self.highest[where[0]] = where[1]
            self.reported += 1
            last = self._sealed and self.reported == self.sent
        if last:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._finish)

    @property
    def delivered(self) -> bool:
        """Every record counted in so far is delivered."""
        return self.reported == self.sent and not self.failed

    def seal(self) -> asyncio.Future[Tally]:
        """No more records; the future of their delivery (in the event loop)."""
        if self._future is None:
            self._future = self._loop.create_future()
            with self._lock:
                self._sealed = True
                complete = self.reported == self.sent
            if complete:
                self._finish()
        return self._future

    def _finish(self) -> None:
        future = self._future
        if future is None or future.done():
            return
        if self.failed:
            future.set_exception(ProduceError(f"{self.failed} of {self.sent} record(s) not delivered: {self.error}"))
        else:
            future.set_result(self)


class Producer:
    """`send` returns a future resolved (in the event loop) once the record is delivered;
    `count` counts the record into a `Tally` instead."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._rd = _RdKafka(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: list[tuple[asyncio.Future[Delivered], Any, Any]] = []
        self._lock = threading.Lock()
        self._handing_over = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Poll for delivery reports from now on; futures resolve in `loop`."""
        if self._thread is not None:
            return
        self._loop = loop
        self._thread = threading.Thread(target=self._poll, name="clearance-producer", daemon=True)
        self._thread.start()

    def tally(self, *, offsets: bool = False) -> Tally:
        """A new, empty tally whose future resolves in the running event loop."""
        return Tally(self._started(), offsets=offsets)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None, partition: int = -1
    ) -> asyncio.Future[Delivered]:
        """Queue one record (key-partitioned with murmur2 unless `partition` is given); its
        delivery future."""
        future: asyncio.Future[Delivered] = self._started().create_future()
        self._produce(topic, key, value, headers, partition, self._report_to(future))
        return future

    def count(
        self,
        tally: Tally,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int = -1,
    ) -> None:
        """Queue one record as `send` does, counted into `tally` instead of a future of its own."""
        self._produce(topic, key, value, headers, partition, tally)
        tally.sent += 1  # counted once queued (a produce that raised reports nothing)

    def _started(self) -> asyncio.AbstractEventLoop:
        """The loop delivery reports resolve in (the running one, polled from now on)."""
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
            self.start(loop)
        return loop

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None, partition: int, report: Any
    ) -> None:
        while True:
            try:
                if headers:
                    self._rd.produce(topic, value, key, partition, on_delivery=report, headers=list(headers))
                else:
                    self._rd.produce(topic, value, key, partition, on_delivery=report)
                break
            except BufferError:  # librdkafka's queue is full: let the poll thread drain it
                time.sleep(_FULL_WAIT_S)
        self.sent += 1

    def pending(self) -> int:
        """Records queued or in flight."""
        return len(self._rd)

    def flush(self, timeout_s: float) -> int:
        """Wait (blocking) until every record is delivered or `timeout_s`; the number left."""
        return int(self._rd.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush, stop polling; the number of records not delivered."""
        left = self.flush(timeout_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _POLL_S + 1)
        if left:
            log.warning("producer closed with %d record(s) not delivered", left)
        return left

    def _report_to(self, future: asyncio.Future[Delivered]) -> Any:
        loop = future.get_loop()

        def report(err: Any, msg: Any) -> None:  # librdkafka's poll, in the poll thread
            with self._lock:
                self._reports.append((future, err, msg))
                if self._handing_over:
                    return
                self._handing_over = True
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(self._resolve)

        return report

    def _resolve(self) -> None:
        """In the event loop: resolve every future reported so far."""
        with self._lock:
            reports, self._reports = self._reports, []
            self._handing_over = False
        for future, err, msg in reports:
            if future.done():
                continue
            if err is not None:
                future.set_exception(ProduceError(_describe(err)))
            else:
                future.set_result(Delivered(msg.topic(), msg.partition(), msg.offset()))

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._rd.poll(_POLL_S)
            except KafkaException as exc:  # a fatal producer error (e.g. idempotence broken)
                log.error("producer: %s", _describe(exc.args[0] if exc.args else exc))
                time.sleep(_POLL_S)


def _describe(err: Any) -> str:
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return type(err).__name__
