"""agents.events: the raw schema makes the event Faust's own raw schema makes, and the quiet
monitor keeps what Faust's consumer reads back of it and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP, Message

from agents.app import build
from agents.events import QuietMonitor, RawSchema
from clearance.settings import Settings


def _message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        "orders",
        3,
        41,
        1_800_000_000.5,
        0,
        [("h", b"1")],
        key,
        value,
        None,
        tp=TP("orders", 3),
    )


def _decode(schema: Any, app: faust.App, message: Message) -> Any:
    async def decode() -> Any:
        return await schema.compile(app)(message)

    return asyncio.run(decode())


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"PK1", b'{"orderNo":"PK1"}'), (None, b"\xff\xfe not UTF-8"), (b"k", b""), (b"k", None)],
)
def test_raw_schema_makes_the_event_fausts_raw_schema_makes(tmp_path: Path, key: bytes | None, value: bytes) -> None:
    app = faust.App("events-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    message = _message(key, value)
    ours = _decode(RawSchema(), app, message)
    theirs = _decode(
        faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"), app, message
    )
    assert type(ours) is type(theirs)
    assert (ours.key, ours.value, ours.headers, ours.message) == (theirs.key, theirs.value, theirs.headers, message)
    assert ours.value is message.value  # the broker's bytes, not a copy


def test_raw_schema_encodes_as_fausts_raw_schema(tmp_path: Path) -> None:
    """Sends (Faust's, with exactly_once) encode keys and values as the raw codec does."""
    app = faust.App("events-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    schema = RawSchema()
    assert schema.dumps_key(app, b"PK1", headers=None)[0] == b"PK1"
    assert schema.dumps_value(app, b"{}", headers=None)[0] == b"{}"


def test_quiet_monitor_keeps_what_the_consumer_reads_and_nothing_else() -> None:
    monitor = QuietMonitor()
    tp = TP("orders", 3)
    message = _message(b"PK1", b"{}")
    monitor.on_message_in(tp, 41, message)
    state = monitor.on_stream_event_in(tp, 41, None, None)  # type: ignore[arg-type]  # unused by the hook
    monitor.on_stream_event_out(tp, 41, None, None, state)  # type: ignore[arg-type]
    monitor.on_message_out(tp, 41, message)
    assert monitor.tp_read_offsets[tp] == 41
    assert tp in monitor.stream_inbound_time  # Faust's "stream is not processing" check reads it
    assert state is None
    assert (monitor.messages_received_total, monitor.events_total, monitor.messages_active) == (0, 0, 0)
    assert not monitor.events_runtime and message.time_in is None


def test_the_worker_uses_both(tmp_path: Path) -> None:
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2)
    pipeline = build(settings)
    assert isinstance(pipeline.app.monitor, QuietMonitor)
    channels = [agent.channel for agent in pipeline.app.agents.values()]
    assert len(channels) == 2  # the join's inputs and ticks, the quota stage's candidates
    assert all(isinstance(channel.schema, RawSchema) for channel in channels)


def test_the_consumer_fetches_max_fetch_kb_a_partition(tmp_path: Path) -> None:
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2, max_fetch_kb=64)
    assert build(settings).app.conf.consumer_max_fetch_size == 64 * 1024
