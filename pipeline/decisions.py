"""From a comparison's reason codes to a declaration: status, id, inspection sample.

Everything here is a function of the documents and the regime, so the same order
decided on the same documents always yields the same declaration (only the wall
clock `decided_at_ms`, passed in by the shell, differs).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

from pipeline.config import RulesConfig
from pipeline.records import (
    DOC_KINDS,
    Declaration,
    DocKind,
    Document,
    Order,
    OrderId,
    Payment,
    Status,
    TupleNew,
    Waybill,
)
from pipeline.rules import DOCUMENT_AFTER_DECISION, REJECTING

_TWO_64: Final = float(1 << 64)
_new: Final[TupleNew] = tuple.__new__  # NamedTuple.__new__ is a Python function; every field is passed, in order


def declaration_id(order_no: str, guids: tuple[str | None, str | None, str | None]) -> str:
    """Deterministic id: a hash of the order number and the guids of the documents used."""
    text = "\x1f".join((order_no, *(g or "" for g in guids)))
    return blake2b(text.encode(), digest_size=16).hexdigest()


def review_id(order_no: str, guid: str) -> str:
    """Deterministic id of the REVIEW record for a document after the decision."""
    return blake2b(f"{order_no}\x1fafter\x1f{guid}".encode(), digest_size=16).hexdigest()


def inspection_selected(order_no: str, seed: str, rate: float) -> bool:
    """The deterministic X-ray sample: a hash of seed and order number below `rate`.

    A replay with the same seed selects the same parcels; rate 0 selects none, 1 all.
    """
    digest = blake2b(f"{seed}\x1f{order_no}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64 < rate


def status_for(reasons: tuple[str, ...], order_no: str, config: RulesConfig) -> tuple[Status, bool]:
    """(status, inspection) for a set of reasons (CEB622 receipt mapping)."""
    if not reasons:
        if inspection_selected(order_no, config.inspection_seed, config.inspection_rate):
            return "INSPECTION", True
        return "RELEASED", False
    if any(code in REJECTING for code in reasons):
        return "REJECTED", False
    return "REVIEW", False


def decide(
    order: Order,
    payment: Payment,
    waybill: Waybill,
    reasons: tuple[str, ...],
    amounts: tuple[int, int],
    config: RulesConfig,
    decided_at_ms: int,
    received_at_ms: int | None = None,
) -> Declaration:
    """The declaration of a complete set; `amounts` is (dutiable, tax) in fen.

    Its event time is the latest appTime of the three documents: the instant the set
    became complete, the same in every runner and after every restart. `received_at_ms`
    is the Kafka timestamp of the document that completed it (None where unknown).
    """
    order_no = order.order_no
    status, inspection = status_for(reasons, order_no, config)
    # declaration_id(order_no, (the three guids)), inlined: the same text, hashed the same way.
    text = f"{order_no}\x1f{order.guid}\x1f{payment.guid}\x1f{waybill.guid}"
    return _new(
        Declaration,
        (
            blake2b(text.encode(), digest_size=16).hexdigest(),
            order.order_no,
            order.ebp_code,
            order.ebc_code,
            payment.pay_code,
            payment.pay_transaction_id,
            waybill.logistics_code,
            waybill.logistics_no,
            order.buyer_id_number,
            status,
            reasons,
            amounts[0],  # dutiable_value
            amounts[1],  # tax
            inspection,
            {"order": order.guid, "payment": payment.guid, "waybill": waybill.guid},
            max(order.app_time_ms, payment.app_time_ms, waybill.app_time_ms),  # event_time_ms
            decided_at_ms,
            received_at_ms,
        ),
    )


def decide_incomplete(
    order_no: OrderId,
    docs: tuple[Order | None, Payment | None, Waybill | None],
    closed_at_ms: int,
    decided_at_ms: int,
) -> Declaration:
    """The REJECTED declaration of a window that closed with documents missing.

    Only the MISSING_* reasons apply; the event time is the window's deadline.
    """
    order, payment, waybill = docs
    reasons = tuple(sorted(f"MISSING_{kind.upper()}" for kind, doc in zip(DOC_KINDS, docs, strict=True) if doc is None))
    guids = (order.guid if order else None, payment.guid if payment else None, waybill.guid if waybill else None)
    return Declaration(
        declaration_id(order_no, guids),
        order_no,
        *_identity(order, payment, waybill),
        status="REJECTED",
        reasons=reasons,
        dutiable_value=order.goods_value + order.freight if order else None,
        tax=None,
        inspection=False,
        documents=dict(zip(DOC_KINDS, guids, strict=True)),
        event_time_ms=closed_at_ms,
        decided_at_ms=decided_at_ms,
    )


def decide_after(doc: Document, decided_at_ms: int) -> Declaration:
    """The extra REVIEW record for a new document (new guid) of an order already decided.

    It carries the identifying fields of that document only; the declaration itself
    is not changed.
    """
    documents: dict[DocKind, str | None] = {k: None for k in DOC_KINDS}
    documents[doc.kind] = doc.guid
    order = doc if isinstance(doc, Order) else None
    payment = doc if isinstance(doc, Payment) else None
    waybill = doc if isinstance(doc, Waybill) else None
    return Declaration(
        review_id(doc.order_no, doc.guid),
        doc.order_no,
        *_identity(order, payment, waybill),
        status="REVIEW",
        reasons=(DOCUMENT_AFTER_DECISION,),
        dutiable_value=None,
        tax=None,
        inspection=False,
        documents=documents,
        event_time_ms=doc.app_time_ms,
        decided_at_ms=decided_at_ms,
    )


_Opt = str | None
_Identity = tuple[_Opt, _Opt, _Opt, _Opt, _Opt, _Opt, _Opt]


def _identity(order: Order | None, payment: Payment | None, waybill: Waybill | None) -> _Identity:
    """The identifying fields of a declaration from whichever documents are present.

    ebpCode, ebcCode, payCode, payTransactionId, logisticsCode, logisticsNo,
    buyerIdNumber, in that order; payment references prefer the payment's.
    """
    return (
        order.ebp_code if order else (payment.ebp_code if payment else None),
        order.ebc_code if order else None,
        payment.pay_code if payment else (order.pay_code if order else None),
        payment.pay_transaction_id if payment else (order.pay_transaction_id if order else None),
        waybill.logistics_code if waybill else None,
        waybill.logistics_no if waybill else None,
        order.buyer_id_number if order else None,
    )
