"""Faust's producer buffer asked once per message (agents/buffer.py): the same answer as
Faust's `ProducerBuffer.wait_until_ebb`, without the settings lookup. No broker: the
buffers are Faust's own classes, built by a worker app that is never started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from agents.app import build
from agents.buffer import Buffer, Producer
from clearance.settings import Settings


def _app(tmp_path: Path) -> Any:
    settings = Settings.from_env().with_overrides(data_dir=str(tmp_path), partitions=2)
    return build(settings).app


def test_the_worker_app_makes_this_producer_with_this_buffer(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert app.transport.Producer is Producer  # what Transport.create_producer makes
    producer = app.producer
    assert type(producer) is Producer and type(producer.buffer) is Buffer
    assert producer.buffer.app is app


async def _flushes(buffer: ProducerBuffer, queued: int) -> list[int | None]:
    """What `wait_until_ebb` asks to flush with `queued` records waiting: [] when it does not."""
    asked: list[int | None] = []

    async def flush_atmost(max_messages: int | None) -> int:
        asked.append(max_messages)
        return 0

    buffer.flush_atmost = flush_atmost  # type: ignore[method-assign]
    for _ in range(queued):
        buffer.pending.put_nowait(object())
    await buffer.wait_until_ebb()
    return asked


@pytest.mark.parametrize("queued", [0, 1, ProducerBuffer.max_messages, ProducerBuffer.max_messages + 1, 250])
def test_it_flushes_when_faust_s_does(tmp_path: Path, queued: int) -> None:
    app = _app(tmp_path)

    async def both() -> tuple[list[int | None], list[int | None]]:
        ours, fausts = Buffer(), ProducerBuffer()
        ours.app = fausts.app = app
        return await _flushes(ours, queued), await _flushes(fausts, queued)

    ours, fausts = asyncio.run(both())
    assert ours == fausts
    assert ours == ([ProducerBuffer.max_messages] if queued > ProducerBuffer.max_messages else [])


def test_it_counts_the_queue_it_found_first_as_it_fills(tmp_path: Path) -> None:
    """The queue is looked up once; its length is read on every call."""
    app = _app(tmp_path)

    async def body() -> list[list[int | None]]:
        buffer = Buffer()
        buffer.app = app
        first = await _flushes(buffer, 0)
        return [first, await _flushes(buffer, ProducerBuffer.max_messages + 1)]

    assert asyncio.run(body()) == [[], [ProducerBuffer.max_messages]]
