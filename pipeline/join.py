"""The per-order join as a state machine: state and document in, next state and outputs out.

Nothing is awaited and there is no store and no clock inside: the shell loads the
state by order number, calls `step` (a document arrived) or `expire` (event time
passed the state's deadline), writes `Step.state` back (None: delete the key) and
sends `Step.emit`. The Faust agent, the embedded runner and the benchmarks all call
these two functions.

Life of an order (docs/CONTRACT.md, "Time" and "Changes to documents"):
  open     first document seen; deadline = its appTime + window. Documents fill,
           replace (appType 1/2, strictly newer appTime) or withdraw (appType 3)
           their slot; a guid seen before is ignored.
  decided  all three present -> a `Candidate` for the quota stage; or the window
           closed incomplete -> a REJECTED declaration with MISSING_* reasons.
           Only the guids are kept, until `retention` of event time after the
           decision, so redeliveries are ignored and any new guid yields one REVIEW
           record (DOCUMENT_AFTER_DECISION).
  gone     `expire` of a decided state deletes it.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from pipeline.config import RulesConfig
from pipeline.decisions import decide, decide_after, decide_incomplete
from pipeline.records import APP_DELETE, Declaration, Document, Order, OrderId, Payment, TupleNew, Waybill
from pipeline.rules import compare, evaluate
from pipeline.text import norm_id
from pipeline.timeconv import cst_year

# The hot paths build these NamedTuples with tuple.__new__ and every field in order: the
# generated NamedTuple.__new__ is a Python function (a third of a microsecond a call).
_new: Final[TupleNew] = tuple.__new__


class JoinState(NamedTuple):
    """What is known of one order.

    `deadline_ms` is the window's end while open, and
    the instant the decided order may be forgotten once decided.
    """

    order_no: OrderId
    deadline_ms: int
    order: Order | None = None
    payment: Payment | None = None
    waybill: Waybill | None = None
    guids: tuple[str, ...] = ()
    decided: str | None = None

    @property
    def is_open(self) -> bool:
        """True until the order is decided."""
        return self.decided is None

    @property
    def docs(self) -> tuple[Order | None, Payment | None, Waybill | None]:
        """The current order, payment and waybill (None where absent)."""
        return (self.order, self.payment, self.waybill)


class Candidate(NamedTuple):
    """A complete comparison on its way to the quota stage (keyed by buyer).

    `declaration` is final except for the annual quota: the quota stage may add
    ANNUAL_QUOTA_EXCEEDED (and so turn it REJECTED).
    """

    declaration: Declaration
    buyer_key: str
    year: int


Emit = Declaration | Candidate


class Step(NamedTuple):
    """The outcome of one transition.

    `state` None means: delete the key.
    `changed` False means the state is the one passed in (nothing to write).
    """

    state: JoinState | None
    emit: tuple[Emit, ...] = ()
    changed: bool = True


def step(
    state: JoinState | None,
    doc: Document,
    config: RulesConfig,
    event_ms: int,
    wall_ms: int,
    received_ms: int | None = None,
) -> Step:
    """Apply one document.

    Args:
        state: the order's state, None for an order not seen (or forgotten).
        doc: a parsed document of this order.
        config: the regime.
        event_ms: the partition's event time including this document; windows with a
            deadline before it must already have been expired by the shell.
        wall_ms: the wall clock, for `decidedAt` only.
        received_ms: when the shell received the document (its Kafka timestamp), for
            `receivedAt` of the declaration it completes; None where unknown.
    """
    if state is None:
        state = _new(JoinState, (doc.order_no, doc.app_time_ms + config.window_ms, None, None, None, (), None))
    elif doc.guid in state.guids:
        return _new(Step, (state, (), False))
    guids = (*state.guids, doc.guid)
    if state.decided is not None:
        after = _new(JoinState, (state.order_no, state.deadline_ms, None, None, None, guids, state.decided))
        return _new(Step, (after, (decide_after(doc, wall_ms),), True))
    state = _apply(state, doc, guids)
    if state.order is not None and state.payment is not None and state.waybill is not None:
        return _complete(state, (state.order, state.payment, state.waybill), config, wall_ms, received_ms)
    if state.deadline_ms < event_ms:
        # The first document came after its own window had passed: close at once.
        closed = expire(state, config, wall_ms)
        return _new(Step, (closed.state, closed.emit, True))
    return _new(Step, (state, (), True))


def expire(state: JoinState, config: RulesConfig, wall_ms: int) -> Step:
    """Event time passed `state.deadline_ms`: close an open window, forget a decided order."""
    if state.decided is not None:
        return _new(Step, (None, (), True))
    declaration = decide_incomplete(state.order_no, state.docs, state.deadline_ms, wall_ms)
    closed = _decided(state, declaration.declaration_id, state.deadline_ms + config.retention_ms)
    return _new(Step, (closed, (declaration,), True))


def _apply(state: JoinState, doc: Document, guids: tuple[str, ...]) -> JoinState:
    """Fill, replace (strictly newer appTime) or withdraw the document's slot."""
    order, payment, waybill = state.order, state.payment, state.waybill
    current = order if doc.kind == "order" else payment if doc.kind == "payment" else waybill
    if doc.app_type == APP_DELETE:
        new: Document | None = None
    elif current is None or doc.app_time_ms > current.app_time_ms:
        new = doc
    else:
        new = current
    if isinstance(doc, Order):
        order = new if isinstance(new, Order) else None
    elif isinstance(doc, Payment):
        payment = new if isinstance(new, Payment) else None
    else:
        waybill = new if isinstance(new, Waybill) else None
    return _new(JoinState, (state.order_no, state.deadline_ms, order, payment, waybill, guids, None))


def _complete(
    state: JoinState,
    docs: tuple[Order, Payment, Waybill],
    config: RulesConfig,
    wall_ms: int,
    received_ms: int | None,
) -> Step:
    order, payment, waybill = docs
    comparison = compare(order, payment, waybill, config)
    amounts = (comparison.dutiable, comparison.tax)
    declaration = decide(order, payment, waybill, evaluate(comparison), amounts, config, wall_ms, received_ms)
    candidate = _new(Candidate, (declaration, norm_id(order.buyer_id_number), cst_year(order.app_time_ms)))
    forget_at = declaration.event_time_ms + config.retention_ms
    return _new(Step, (_decided(state, declaration.declaration_id, forget_at), (candidate,), True))


def _decided(state: JoinState, declaration_id: str, forget_at_ms: int) -> JoinState:
    return _new(JoinState, (state.order_no, forget_at_ms, None, None, None, state.guids, declaration_id))
