"""The join table's value: the core's JoinState bytes plus the outbox of in-doubt emits.

Why an outbox: Faust (at_least_once) flushes the producer before it commits input
offsets, so everything sent for a committed message was delivered. But the table
(local RocksDB and its changelog) can be *ahead* of the committed offset when a
worker dies: the replayed message then finds its guid already in the state, the
core answers `changed=False`, and a declaration whose send was lost would never be
sent again. So every write that emits keeps those emits, tagged with the source
(topic, offset), next to the state. When a partition is (re)assigned, the scan that
rebuilds the deadline index re-sends every entry at or after the committed offset
(a repeat with identical bytes, decidedAt included). Entries behind the committed
offset are known delivered and are dropped at the order's next write.

Layout: `encode_state(state)`, then, only when the outbox is not empty, a NUL byte
and `orjson([[topic, offset, [[dest, key, payload, status], ...]], ...])` (rows written
before `status` existed have three items; the status is then read from the payload). JSON never
contains a raw NUL, so the split is unambiguous and a value without outbox is
exactly the core's state encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from pipeline.codec import decode_state, encode_state
from pipeline.errors import StateCodecError
from pipeline.join import JoinState

Dest = Literal["matched", "flagged", "candidates"]
_DESTS: frozenset[str] = frozenset(("matched", "flagged", "candidates"))
_SEP = b"\x00"
MAX_OUTBOX = 16  # entries per order; an order sees a handful of state-changing documents


@dataclass(frozen=True, slots=True)
class Emit:
    """One message to publish: destination, Kafka key and value (bytes), and a declaration's
    status (for the declarations_out metric; "" for a candidate)."""

    dest: Dest
    key: bytes
    value: bytes
    status: str = ""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """The emits of the input message at (topic, offset) of this order's partition."""

    topic: str
    offset: int
    emits: tuple[Emit, ...]


@dataclass(frozen=True, slots=True)
class Stored:
    """A decoded join-table value."""

    state: JoinState
    outbox: tuple[OutboxEntry, ...] = ()


def encode_stored(stored: Stored) -> bytes:
    head = encode_state(stored.state)
    if not stored.outbox:
        return head
    rows = [
        [e.topic, e.offset, [[m.dest, m.key.decode(), m.value.decode(), m.status] for m in e.emits]]
        for e in stored.outbox
    ]
    return head + _SEP + orjson.dumps(rows)


def decode_stored(raw: bytes) -> Stored:
    """bytes -> Stored; StateCodecError when the bytes are not ours."""
    head, sep, tail = raw.partition(_SEP)
    state = decode_state(head)
    if not sep:
        return Stored(state)
    try:
        entries = tuple(
            OutboxEntry(str(topic), int(offset), tuple(_emit(m) for m in emits))
            for topic, offset, emits in orjson.loads(tail)
        )
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise StateCodecError(f"corrupt outbox: {exc}") from exc
    return Stored(state, entries)


def _emit(row: list[str]) -> Emit:
    dest, key, value, *rest = row
    if dest not in _DESTS:
        raise ValueError(f"unknown destination {dest!r}")
    status = rest[0] if rest else _status_of(dest, value)
    return Emit(dest, key.encode(), value.encode(), status)  # type: ignore[arg-type]  # dest checked above


def _status_of(dest: str, value: str) -> str:
    """The status of an emit written before emits carried it ("" for a candidate)."""
    return "" if dest == "candidates" else str(orjson.loads(value).get("status", ""))
