"""The second stage: the annual quota, keyed by buyer (normalised buyerIdNumber).

Every complete declaration is checked: the buyer's used quota in the order's
calendar year (CST) plus this dutiable value must not exceed the annual limit.
Only declarations that end RELEASED or INSPECTION count toward the used quota.

At-least-once delivery between the stages means a candidate can arrive twice; the
state remembers each declaration id with its verdict, so a repeat yields the very
same declaration and never counts twice.

Order (docs/CONTRACT.md, "Annual quota"): a buyer's complete declarations are counted
in order of (eventTime, orderNo), whatever order they reach the stage in, so the same
documents give the same verdicts at any speed, after any backlog, with any number of
workers. `QuotaOrder` holds candidates until nothing earlier can still come: until
event time (the embedded runner's, or on Kafka the smallest watermark over every join
partition) has passed their eventTime.
"""

from __future__ import annotations

import heapq
from typing import Final, Generic, NamedTuple, TypeVar

from pipeline.config import RulesConfig
from pipeline.decisions import status_for
from pipeline.join import Candidate
from pipeline.records import Declaration, TupleNew
from pipeline.rules import ANNUAL_QUOTA_EXCEEDED

_COUNTED: Final = frozenset({"RELEASED", "INSPECTION"})
_new: Final[TupleNew] = tuple.__new__  # NamedTuple.__new__ is a Python function; every field is passed, in order
T = TypeVar("T")


# NamedTuples, not frozen dataclasses: two are built per candidate, and a frozen
# dataclass's __init__ (one object.__setattr__ per field) was 3.5% of `clearance run`.
class BuyerQuota(NamedTuple):
    """One buyer's quota state. Treat the dicts as immutable: transitions copy them.

    used: year -> dutiable fen of counted declarations.
    verdicts: declaration id -> (event time ms, quota exceeded) for every candidate
        seen within the retention period.
    """

    used: dict[int, int]
    verdicts: dict[str, tuple[int, bool]]


class QuotaStep(NamedTuple):
    """`state` to write back under the buyer key and the final `declaration` to publish."""

    state: BuyerQuota
    declaration: Declaration
    changed: bool = True


def apply_quota(state: BuyerQuota | None, candidate: Candidate, config: RulesConfig) -> QuotaStep:
    """Finish a candidate's declaration against the buyer's annual quota."""
    draft = candidate.declaration
    if state is None:  # a buyer's first declaration (most of them): the general case below, with empty dicts
        dutiable = draft.dutiable_value or 0
        exceeded = dutiable > config.annual_limit_fen
        final = _finish(draft, exceeded, config)
        counted = {candidate.year: dutiable} if final.status in _COUNTED else {}
        first = _new(BuyerQuota, (counted, {draft.declaration_id: (draft.event_time_ms, exceeded)}))
        return _new(QuotaStep, (first, final, True))
    known = state.verdicts.get(draft.declaration_id)
    if known is not None:
        return _new(QuotaStep, (state, _finish(draft, known[1], config), False))
    used = state.used.get(candidate.year, 0)
    dutiable = draft.dutiable_value or 0
    exceeded = used + dutiable > config.annual_limit_fen
    final = _finish(draft, exceeded, config)
    # The copies below keep exactly the entries the filters keep; `min` and `dict` run in C,
    # so the common case (nothing to drop) costs no Python-level loop over a buyer's history.
    first_year = candidate.year - 1
    if min(state.used, default=first_year) >= first_year:
        new_used = dict(state.used)
    else:
        new_used = {y: fen for y, fen in state.used.items() if y >= first_year}
    if final.status in _COUNTED:
        new_used[candidate.year] = used + dutiable
    # Verdicts only need to outlive a redelivery; keep them for the retention period
    # of event time, so a buyer's state stays small however long they shop.
    horizon = draft.event_time_ms - config.retention_ms
    if not state.verdicts or min(state.verdicts.values())[0] >= horizon:
        verdicts = dict(state.verdicts)
    else:
        verdicts = {d: v for d, v in state.verdicts.items() if v[0] >= horizon}
    verdicts[draft.declaration_id] = (draft.event_time_ms, exceeded)
    return _new(QuotaStep, (_new(BuyerQuota, (new_used, verdicts)), final, True))


def _finish(draft: Declaration, exceeded: bool, config: RulesConfig) -> Declaration:
    if not exceeded:
        return draft
    reasons = tuple(sorted((*draft.reasons, ANNUAL_QUOTA_EXCEEDED)))
    status, inspection = status_for(reasons, draft.order_no, config)
    return draft._replace(reasons=reasons, status=status, inspection=inspection)


class QuotaOrder(Generic[T]):
    """Items held until the event time of every source has passed their eventTime.

    A source's event time only grows, and a candidate completes at the appTime of its
    last document, so once every source is past `t` no candidate with eventTime < `t`
    can still come from it (in merge order; a document that arrives later than that is
    late, and its candidate is counted when it arrives). Releasing strictly below the
    watermark keeps ties of the same eventTime together, sorted by orderNo. An item is
    whatever the shell keeps for a candidate under its (eventTime, orderNo): the embedded
    runner the Candidate, the Kafka worker its message and ack (it decodes the candidate
    again on release: held decoded, a backlog's candidates took ~1.6 KB each).
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, int, T]] = []
        self._seq = 0

    def hold(self, event_time_ms: int, order_no: str, item: T) -> None:
        """Keep `item` until `release` passes `event_time_ms`."""
        self._seq += 1
        heapq.heappush(self._heap, (event_time_ms, order_no, self._seq, item))

    def release(self, watermark_ms: int) -> list[T]:
        """The held items with eventTime < `watermark_ms`, in (eventTime, orderNo) order."""
        heap, out = self._heap, []
        while heap and heap[0][0] < watermark_ms:
            out.append(heapq.heappop(heap)[3])
        return out

    def due(self, watermark_ms: int) -> bool:
        """True when `release(watermark_ms)` would release something."""
        heap = self._heap
        return bool(heap) and heap[0][0] < watermark_ms

    def drain(self) -> list[T]:
        """Every held item in (eventTime, orderNo) order (end of input)."""
        return self.release(2**63)

    def __len__(self) -> int:
        return len(self._heap)
