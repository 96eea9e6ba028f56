"""One partition's whole pipeline, store-agnostic: bytes in, declarations and dead letters out.

parse -> advance event time -> close due windows -> join step -> quota stage.
The embedded runner feeds it a whole trace (one event time, as docs/CONTRACT.md, "Files", says);
the benchmarks feed it the same way, so they measure what production runs. The
stores and the wall clock are passed in; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.codec import dead_letter_dict, decode_quota, decode_state, encode_quota, encode_state
from pipeline.config import RulesConfig
from pipeline.errors import InvalidRecord
from pipeline.join import Candidate, JoinState, Step, expire, step
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.quota import BuyerQuota, apply_quota
from pipeline.records import Declaration, DocKind, Document
from pipeline.store import Store
from pipeline.timeline import Timeline

PARSERS: dict[DocKind, Callable[[bytes], Document]] = {
    "order": parse_order,
    "payment": parse_payment,
    "waybill": parse_waybill,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: its topic, partition, offset and key."""

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


class Engine:
    """The join and the quota stage over two Stores and one Timeline."""

    def __init__(
        self,
        config: RulesConfig,
        join_store: Store,
        quota_store: Store,
        timeline: Timeline | None = None,
        *,
        cache_size: int = 0,
    ) -> None:
        self.config = config
        self.join_store = join_store
        self.quota_store = quota_store
        self.timeline = timeline or Timeline()
        self.redeliveries = 0
        # Write-back cache of decoded join states (None: deleted). Most orders complete
        # within minutes, so with a cache their state is never encoded while open.
        # 0 disables it: every step reads and writes the store.
        self._cache: dict[str, JoinState | None] = {}
        self._quotas: dict[bytes, BuyerQuota] = {}
        self._cache_size = cache_size

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
        try:
            self._apply(doc, wall_ms, out)
        except Exception as exc:
            self._internal(exc, raw, origin, wall_ms, out)

    def _internal(self, exc: Exception, raw: bytes, origin: Origin, wall_ms: int, out: Outputs) -> None:
        out.internal_errors.append(exc)
        reason = f"internal error: {type(exc).__name__}"
        out.dead_letters.append(dead_letter_dict(raw, origin, reason, None, internal=True, wall_ms=wall_ms))

    def advance(self, event_ms: int, wall_ms: int, out: Outputs) -> None:
        """Move event time (a document or an idle tick) and close every window it passes."""
        now = self.timeline.advance(event_ms)
        for deadline, order_no in self.timeline.due(now):
            self._expire(deadline, order_no, wall_ms, out)

    def close_all(self, wall_ms: int) -> Outputs:
        """End of input: every open window closes (decided orders are kept)."""
        out = Outputs()
        for deadline, order_no in self.timeline.drain():
            state = self._load(order_no)
            if state is not None and state.is_open and state.deadline_ms == deadline:
                self._expire(deadline, order_no, wall_ms, out)
        return out

    def _apply(self, doc: Document, wall_ms: int, out: Outputs) -> None:
        self.advance(doc.app_time_ms, wall_ms, out)
        state = self._load(doc.order_no)
        result = step(state, doc, self.config, self.timeline.event_ms, wall_ms)
        if not result.changed:
            self.redeliveries += 1
            return
        self._save(doc.order_no, state, result)
        self._emit(result, out)

    def _expire(self, deadline: int, order_no: str, wall_ms: int, out: Outputs) -> None:
        state = self._load(order_no)
        if state is None or state.deadline_ms != deadline:
            return  # stale index entry: the state moved on
        result = expire(state, self.config, wall_ms)
        self._save(order_no, state, result)
        self._emit(result, out)

    def _emit(self, result: Step, out: Outputs) -> None:
        for item in result.emit:
            out.declarations.append(self._quota(item) if isinstance(item, Candidate) else item)

    def _quota(self, candidate: Candidate) -> Declaration:
        key = candidate.buyer_key.encode()
        state = self._quotas.get(key)
        if state is None:
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
            self.quota_store.put(key, encode_quota(result.state))
        return result.declaration

    def flush(self) -> None:
        """Write every cached join and quota state to its store (the caches empty)."""
        store = self.join_store
        for order_no, state in self._cache.items():
            if state is None:
                store.delete(order_no.encode())
            else:
                store.put(order_no.encode(), encode_state(state))
        self._cache.clear()
        for key, quota in self._quotas.items():
            self.quota_store.put(key, encode_quota(quota))
        self._quotas.clear()

    def _load(self, order_no: str) -> JoinState | None:
        if order_no in self._cache:
            return self._cache[order_no]
        raw = self.join_store.get(order_no.encode())
        return decode_state(raw) if raw is not None else None

    def _save(self, order_no: str, before: JoinState | None, result: Step) -> None:
        state = result.state
        if self._cache_size:
            self._cache[order_no] = state
            if len(self._cache) >= self._cache_size:
                self.flush()
        elif state is None:
            self.join_store.delete(order_no.encode())
        else:
            self.join_store.put(order_no.encode(), encode_state(state))
        if state is not None and (before is None or before.deadline_ms != state.deadline_ms):
            self.timeline.schedule(state.deadline_ms, order_no)
