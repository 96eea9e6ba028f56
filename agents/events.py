"""What Faust does with every message before our drain sees it, trimmed through its public API.

Two of Faust's per-message steps do work this worker never uses (GIL samples of case c:
decoding 4%, the monitor 2%):

- `RawSchema`: our topics carry raw bytes. Faust's `Schema` decodes each key and value
  through the serializer registry (the codec "raw" is looked up by name, then returns the
  bytes it was given) and makes the event through a settings lookup; this schema makes the
  event from the message's own bytes. Encoding (Faust's sends, only with exactly_once) is
  Faust's own.
- `QuietMonitor`: Faust's `Monitor` sensor keeps per-message and per-event statistics
  (counters by topic, stream and task, a dict of timings per event, a deque of run times)
  for its own web views, which the worker does not serve (its metrics are agents/metrics.py).
  It keeps what Faust's consumer reads back: each partition's last read offset and when
  a stream last took an event of it (its "stream is not processing" check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

import faust
from faust.sensors import Monitor
from faust.types import TP, AppT, EventT, Message, StreamT


class RawSchema(faust.Schema):  # type: ignore[type-arg]  # generic only in stubs
    """Keys and values as bytes, exactly as the broker gave them (Faust's "raw" codec)."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: AppT, **_: Any) -> Callable[..., Awaitable[EventT[Any]]]:
        """The decode Faust calls for every message: the event of the message's bytes.
        Raw bytes cannot fail to decode, so the decode-error callbacks are never needed."""
        event_type: Callable[..., EventT[Any]] = app.conf.Event  # type: ignore[assignment]  # a class

        async def decode(message: Message, *, propagate: bool = False) -> EventT[Any]:
            return event_type(app, message.key, message.value, message.headers, message)

        return decode


class QuietMonitor(Monitor):
    """Faust's monitor without the per-message statistics nothing here reads."""

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        self.tp_read_offsets[tp] = offset

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        self.stream_inbound_time[tp] = monotonic()  # Faust's consumer checks that streams take events
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any], state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None
