"""One partition's whole pipeline, store-agnostic: bytes in, declarations and dead letters out.

parse -> advance event time -> close due windows -> join step -> quota stage.
The embedded runner feeds it a whole trace (one event time, as docs/CONTRACT.md, "Files", says);
the benchmarks feed it the same way, so they measure what production runs. The
stores and the wall clock are passed in; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from pipeline.codec import dead_letter_dict, decode_quota, decode_state, encode_quota, encode_state
from pipeline.config import RulesConfig
from pipeline.errors import InvalidRecord
from pipeline.join import Candidate, Emit, JoinState, Step, expire, step
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.quota import BuyerQuota, QuotaOrder, apply_quota
from pipeline.records import Declaration, DocKind, Document
from pipeline.store import Store
from pipeline.timeline import Timeline

PARSERS: dict[DocKind, Callable[[bytes], Document]] = {
    "order": parse_order,
    "payment": parse_payment,
    "waybill": parse_waybill,
}


class Origin(NamedTuple):
    """Where a message came from: its topic, partition, offset and key.

    A NamedTuple (it was a frozen dataclass): the embedded runner builds one per line.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


@dataclass(slots=True)
class Outputs:
    """What one call produced: final declarations and dead-letter records."""

    declarations: list[Declaration] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    internal_errors: list[BaseException] = field(default_factory=list)


class States(Protocol):
    """Where a loop keeps its join states, keyed by order number."""

    def load(self, order_no: str) -> JoinState | None:
        """The order's state, None for an order not seen (or forgotten)."""
        ...

    def save(self, order_no: str, before: JoinState | None, result: Step) -> None:
        """Write `result.state` (None: delete); `result.emit` is what this change emits."""
        ...


@dataclass(slots=True)
class Outcome:
    """What one call of the loop did: the emits in order, and counts for the shell's metrics."""

    emits: list[Emit] = field(default_factory=list)
    completed: int = 0  # windows decided with all three documents
    incomplete: int = 0  # windows closed with a document missing
    redelivered: int = 0  # documents ignored (guid seen before)
    after_decision: int = 0  # documents after the decision (a REVIEW record each)


_EXPIRE_BATCH: Final = 1024


class PartitionLoop:
    """Event time, the deadline index and the state machine of one partition.

    Invariants: event time only moves forward; before a document is applied every
    window whose deadline is before its appTime has been expired, earliest deadline
    first; a state is written (`States.save`) before its emits leave the loop.

    `windows` holds the order numbers of the open windows: a window's index entry for an
    order not among them is stale (the order was decided) and is skipped without reading
    the order's state (a window's deadline never moves while it is open). ~100 bytes an
    open window, against the 72 of the entry every order keeps in the index for a window.
    Every decided order leaves such an entry behind, and they come due a window after the
    order opened: all at once when a flush or a late document moves event time a day on
    (19,520 of 20,000 entries at the end of a 20,000-order trace), each a state read (a
    RocksDB get and a decode in the worker) before.
    """

    __slots__ = ("config", "states", "timeline", "windows")

    def __init__(
        self, config: RulesConfig, states: States, timeline: Timeline, windows: set[str] | None = None
    ) -> None:
        """`windows`: the order numbers of the open windows among the states `timeline` indexes."""
        self.config = config
        self.states = states
        self.timeline = timeline
        self.windows: set[str] = set() if windows is None else windows

    @property
    def open_windows(self) -> int:
        """Windows open (orders not decided yet)."""
        return len(self.windows)

    @property
    def event_ms(self) -> int:
        """The partition's event time: the largest appTime applied (or moved to)."""
        return self.timeline.event_ms

    def advance(self, event_ms: int, wall_ms: int, out: Outcome, limit: int | None = None) -> bool:
        """Move event time (a document, an idle tick, a flush) and close every window it passes.

        With `limit`, at most that many deadlines: True when some are still due, for another call.
        """
        now = self.timeline.advance(event_ms)
        due = self.timeline.due
        # In batches: a flush that passes the retention forgets every retained order at once,
        # and one list of them all was ~18 MB of the heap's peak at 100,000 (the soak).
        while (size := _EXPIRE_BATCH if limit is None else min(limit, _EXPIRE_BATCH)) > 0:
            batch = due(now, size)
            if not batch:
                break
            for deadline, order_no, window in batch:
                self._expire(deadline, order_no, window, wall_ms, out)
            if limit is not None:
                limit -= len(batch)
        return self.timeline.has_due()

    def apply(self, doc: Document, wall_ms: int, out: Outcome, received_ms: int | None = None) -> None:
        """Advance to the document's appTime, then step it.

        `received_ms`: the document's Kafka timestamp (ms), the `receivedAt` of the
        declaration it completes; the embedded runner passes none.
        """
        timeline = self.timeline
        if doc.app_time_ms > timeline.event_ms or timeline.has_due():
            self.advance(doc.app_time_ms, wall_ms, out)
        state = self.states.load(doc.order_no)
        result = step(state, doc, self.config, timeline.event_ms, wall_ms, received_ms)
        if not result.changed:
            out.redelivered += 1
            return
        if state is not None and state.decided is not None:
            out.after_decision += 1
        elif result.state is not None and result.state.decided is not None:  # decided by this document
            if isinstance(result.emit[0], Candidate):  # a decision emits one item: candidate or MISSING_*
                out.completed += 1
            else:
                out.incomplete += 1  # a first document whose window had already passed
        self._save(doc.order_no, state, result, out)

    def close_all(self, wall_ms: int, out: Outcome) -> None:
        """End of input: every open window closes (decided orders are kept)."""
        for deadline, order_no, window in self.timeline.drain():
            if window:  # a retention's entry: the order is decided already
                self._expire(deadline, order_no, window, wall_ms, out)

    def _expire(self, deadline: int, order_no: str, window: bool, wall_ms: int, out: Outcome) -> None:
        if window and order_no not in self.windows:
            return  # a stale window entry: the order was decided (or forgotten since)
        state = self.states.load(order_no)
        if state is None or state.deadline_ms != deadline:
            return  # stale index entry: the state moved on
        if state.is_open:
            out.incomplete += 1
        self._save(order_no, state, expire(state, self.config, wall_ms), out)

    def _save(self, order_no: str, before: JoinState | None, result: Step, out: Outcome) -> None:
        self.states.save(order_no, before, result)
        state = result.state
        was_open = before is not None and before.decided is None
        is_open = state is not None and state.decided is None
        if state is not None and (before is None or before.deadline_ms != state.deadline_ms or was_open != is_open):
            self.timeline.schedule(state.deadline_ms, order_no, is_open)
        if is_open != was_open:  # opened, or decided or forgotten: once per window, not per document
            if is_open:
                self.windows.add(order_no)
            else:
                self.windows.discard(order_no)
        if result.emit:
            out.emits.extend(result.emit)


_UNCACHED: Final = object()


class StoreStates:
    """`States` over a Store, with an optional write-back cache of decoded states.

    Most orders complete within minutes, so with a cache their state is never encoded
    while open. `cache_size` 0 disables it: every step reads and writes the store.
    `empty`: the store starts empty, so until something is written to it a key that is
    not cached is not stored either, and `load` does not ask (a new order was a RocksDB
    read, 4% of `clearance run`).
    """

    __slots__ = ("store", "cache_size", "_cache", "_store_empty")

    def __init__(self, store: Store, cache_size: int = 0, *, empty: bool = False) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: dict[str, JoinState | None] = {}  # None: deleted
        self._store_empty = empty

    def load(self, order_no: str) -> JoinState | None:
        """The cached state, else the stored one."""
        cached = self._cache.get(order_no, _UNCACHED)
        if cached is not _UNCACHED:
            return cached  # type: ignore[return-value]  # a JoinState or None, not the marker
        if self._store_empty:
            return None
        raw = self.store.get(order_no.encode())
        return decode_state(raw) if raw is not None else None

    def save(self, order_no: str, before: JoinState | None, result: Step) -> None:
        """Cache the new state (flushing a full cache), or write it through."""
        state = result.state
        if self.cache_size:
            self._cache[order_no] = state
            if len(self._cache) >= self.cache_size:
                self.flush()
        elif state is None:
            self.store.delete(order_no.encode())
        else:
            self._store_empty = False
            self.store.put(order_no.encode(), encode_state(state))

    def flush(self) -> None:
        """Write every cached state to the store (the cache empties)."""
        self._store_empty = False
        for order_no, state in self._cache.items():
            if state is None:
                self.store.delete(order_no.encode())
            else:
                self.store.put(order_no.encode(), encode_state(state))
        self._cache.clear()


class Engine:
    """The embedded pipeline: parse, one PartitionLoop over a Store, the quota stage."""

    def __init__(
        self,
        config: RulesConfig,
        join_store: Store,
        quota_store: Store,
        timeline: Timeline | None = None,
        *,
        cache_size: int = 0,
        empty: bool = False,
    ) -> None:
        """`empty`: both stores start empty (see StoreStates); then keys never written are not read."""
        self.config = config
        self.join_store = join_store
        self.quota_store = quota_store
        self.states = StoreStates(join_store, cache_size, empty=empty)
        self._quota_store_empty = empty
        self.loop = PartitionLoop(config, self.states, timeline or Timeline())
        self.redeliveries = 0
        self._quotas: dict[bytes, BuyerQuota] = {}
        self._held: QuotaOrder[Candidate] = QuotaOrder()
        self._cache_size = cache_size
        self._outcome = Outcome()  # reused by `apply`: emptied after each call

    @property
    def timeline(self) -> Timeline:
        """Event time and the deadline index of the whole trace."""
        return self.loop.timeline

    def feed(self, kind: DocKind, raw: bytes, origin: Origin, wall_ms: int) -> Outputs:
        """Process one raw message. Never raises: bad input and bugs become dead letters."""
        out = Outputs()
        doc = self.parse(kind, raw, origin, wall_ms, out)
        if doc is not None:
            self.apply(doc, raw, origin, wall_ms, out)
        return out

    def parse(self, kind: DocKind, raw: bytes, origin: Origin, wall_ms: int, out: Outputs) -> Document | None:
        """Parse one message; on bad input append its dead letter to `out` and return None."""
        try:
            return PARSERS[kind](raw)
        except InvalidRecord as err:
            out.dead_letters.append(
                dead_letter_dict(raw, origin, err.reason, err.field, internal=False, wall_ms=wall_ms)
            )
        except Exception as exc:  # a bug, not bad input: keep the message, keep going
            self._internal(exc, raw, origin, wall_ms, out)
        return None

    def apply(self, doc: Document, raw: bytes, origin: Origin, wall_ms: int, out: Outputs) -> None:
        """Apply a parsed document; a bug dead-letters the original bytes instead of raising."""
        outcome = self._outcome
        try:
            self.loop.apply(doc, wall_ms, outcome)
            if outcome.redelivered:
                self.redeliveries += outcome.redelivered
                outcome.redelivered = 0
            if outcome.emits or self._held.due(self.loop.event_ms):
                self._emit(outcome, out)
        except Exception as exc:
            self._internal(exc, raw, origin, wall_ms, out)
        finally:
            outcome.emits.clear()

    def _internal(self, exc: Exception, raw: bytes, origin: Origin, wall_ms: int, out: Outputs) -> None:
        out.internal_errors.append(exc)
        reason = f"internal error: {type(exc).__name__}"
        out.dead_letters.append(dead_letter_dict(raw, origin, reason, None, internal=True, wall_ms=wall_ms))

    def advance(self, event_ms: int, wall_ms: int, out: Outputs) -> None:
        """Move event time (a document or an idle tick) and close every window it passes."""
        outcome = Outcome()
        self.loop.advance(event_ms, wall_ms, outcome)
        self._emit(outcome, out)

    def close_all(self, wall_ms: int) -> Outputs:
        """End of input: every open window closes (decided orders are kept)."""
        out, outcome = Outputs(), Outcome()
        self.loop.close_all(wall_ms, outcome)
        self._emit(outcome, out, final=True)
        return out

    def _emit(self, outcome: Outcome, out: Outputs, *, final: bool = False) -> None:
        """Send declarations at once; candidates wait, then meet the quota in (eventTime, orderNo) order.

        A candidate waits until event time has passed its eventTime (pipeline/quota.py).
        """
        for candidate in self._held.release(self.loop.event_ms):  # decided before this call
            out.declarations.append(self._quota(candidate))
        for item in outcome.emits:
            if isinstance(item, Candidate):
                declaration = item.declaration
                self._held.hold(declaration.event_time_ms, declaration.order_no, item)
            else:
                out.declarations.append(item)
        for candidate in self._held.drain() if final else self._held.release(self.loop.event_ms):
            out.declarations.append(self._quota(candidate))

    def _quota(self, candidate: Candidate) -> Declaration:
        key = candidate.buyer_key.encode()
        state = self._quotas.get(key)
        if state is None and not self._quota_store_empty:
            raw = self.quota_store.get(key)
            state = decode_quota(raw) if raw is not None else None
        result = apply_quota(state, candidate, self.config)
        if not result.changed:
            return result.declaration
        if self._cache_size:
            self._quotas[key] = result.state
            if len(self._quotas) >= self._cache_size:
                self.flush()
        else:
            self._quota_store_empty = False
            self.quota_store.put(key, encode_quota(result.state))
        return result.declaration

    def flush(self) -> None:
        """Write every cached join and quota state to its store (the caches empty)."""
        self.states.flush()
        self._quota_store_empty = False
        for key, quota in self._quotas.items():
            self.quota_store.put(key, encode_quota(quota))
        self._quotas.clear()
