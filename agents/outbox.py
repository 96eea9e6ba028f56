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

from collections.abc import Callable, Iterable
from typing import NamedTuple

import orjson

from agents.sender import Dest, Emit, Msg, Table
from pipeline.codec import decode_state, encode_candidate, encode_declaration, encode_state
from pipeline.errors import StateCodecError
from pipeline.join import Candidate, JoinState, Step
from pipeline.records import Declaration

_DESTS: frozenset[str] = frozenset(("matched", "flagged", "candidates"))
_SEP = b"\x00"
_new = tuple.__new__  # a NamedTuple with every field: its own __new__ is a Python function
MAX_OUTBOX = 16  # entries per order; an order sees a handful of state-changing documents


class OutboxEntry(NamedTuple):
    """The emits of the input message at (topic, offset) of this order's partition."""

    topic: str
    offset: int
    emits: tuple[Emit, ...]


class Stored(NamedTuple):
    """A decoded join-table value (a NamedTuple, as the records: one per state read)."""

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
        return _new(Stored, (state, ()))
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


def emit_of(item: Declaration | Candidate) -> Emit:
    """The message an emitted core value becomes."""
    if isinstance(item, Candidate):
        # Emit's own defaults: a candidate has no status or times
        return Emit("candidates", item.buyer_key.encode(), encode_candidate(item))
    dest: Dest = "matched" if item.matched else "flagged"
    value = encode_declaration(item)
    return _new(Emit, (dest, item.order_no.encode(), value, item.status, item.decided_at_ms, item.received_at_ms))


class TableStates:
    """One partition of the join table as the core loop's `States`: each value is the
    order's JoinState plus its outbox of in-doubt emits.

    The shell sets `source` (the message being applied, or the tick that moved event
    time) before it calls the loop: a change that emits records those emits under the
    source's (topic, offset). `save` keeps the encoded emits in `outgoing` for the shell
    to send once the loop returns (state first, then send). `committed(topic)` is the
    group's committed offset of that topic in this partition: entries behind it are
    delivered and are dropped at the order's next write."""

    def __init__(self, table: Table, committed: Callable[[str], int | None]) -> None:
        self.table = table
        self.committed = committed
        self.source: Msg | None = None
        self.outgoing: list[Emit] = []
        # The outbox of the last order loaded, for its save. Only the last: the loop saves an
        # order right after loading it, or not at all (a stale deadline-index entry, a
        # redelivered document), and a dict of every load kept one decoded outbox per retained
        # decided order (its stale window deadline is loaded, never saved), ~1 KB each until
        # the retention ended (issue 13).
        self._loaded: tuple[str, tuple[OutboxEntry, ...]] | None = None

    def load(self, order_no: str) -> JoinState | None:
        raw = self.table.get(order_no.encode())
        if raw is None:
            self._loaded = (order_no, ())
            return None
        stored = decode_stored(raw)
        self._loaded = (order_no, stored.outbox)
        return stored.state

    def save(self, order_no: str, before: JoinState | None, result: Step) -> None:
        key = order_no.encode()
        outbox = self.in_doubt(self._outbox(order_no, key))
        self._loaded = None
        if result.state is None:
            del self.table[key]
            return
        emits = tuple(emit_of(item) for item in result.emit)
        if emits:
            source = self.source
            if source is None:
                raise RuntimeError("TableStates.source is unset: the shell sets it before it calls the loop")
            outbox = (*outbox, OutboxEntry(source.topic, source.offset, emits))[-MAX_OUTBOX:]
            self.outgoing += emits
        self.table[key] = encode_stored(Stored(result.state, outbox))

    @property
    def held(self) -> int:
        """Decoded outboxes held between a load and its save: at most one, whatever was loaded."""
        return int(self._loaded is not None and bool(self._loaded[1]))

    def _outbox(self, order_no: str, key: bytes) -> tuple[OutboxEntry, ...]:
        """The stored outbox of the order being saved: the one loaded, else read again."""
        loaded = self._loaded
        if loaded is not None and loaded[0] == order_no:
            return loaded[1]
        raw = self.table.get(key)
        return () if raw is None else decode_stored(raw).outbox

    def in_doubt(self, outbox: Iterable[OutboxEntry]) -> tuple[OutboxEntry, ...]:
        """Entries whose source message is not yet committed (so maybe not delivered)."""
        kept = []
        for entry in outbox:
            committed = self.committed(entry.topic)
            # The group committed "the next offset to read": everything below it was acked, and
            # an ack waits for every send its message caused (agents/acks.py): delivered.
            if committed is None or entry.offset >= committed:
                kept.append(entry)
        return tuple(kept)

    def take(self) -> list[Emit]:
        """The emits saved since the last call, in order."""
        out, self.outgoing = self.outgoing, []
        return out
