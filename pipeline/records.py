"""The typed documents and the declaration. Immutable values, money in integer fen.

The documents are NamedTuples, not frozen dataclasses: one is built per message, and
a frozen dataclass's __init__ (one object.__setattr__ per field) cost ~7 us for an
order against ~1.3 us for a NamedTuple (measured; see benchmarks/RESULTS.md).

Text fields keep the sender's original spelling; the rules normalise when they
compare (see `pipeline.text`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Literal, NamedTuple, NewType, Protocol, TypeVar

OrderId = NewType("OrderId", str)
DocKind = Literal["order", "payment", "waybill"]
DOC_KINDS: tuple[DocKind, DocKind, DocKind] = ("order", "payment", "waybill")

AppType = Literal[1, 2, 3]
APP_NEW: AppType = 1
APP_MODIFY: AppType = 2
APP_DELETE: AppType = 3

Status = Literal["RELEASED", "INSPECTION", "REVIEW", "REJECTED"]
RETURN_STATUS: dict[Status, int] = {"RELEASED": 800, "INSPECTION": 500, "REVIEW": 300, "REJECTED": 100}


class Item(NamedTuple):
    """One order line (CEB311 `items`)."""

    gnum: int
    item_no: str | None
    item_name: str
    gcode: str
    qty: int | Decimal  # an int as sent (no Decimal on the hot path), a Decimal for a fraction
    unit: str | None
    price: int
    total_price: int
    country: str | None


class Order(NamedTuple):
    """CEB311 order from the e-commerce platform."""

    guid: str
    app_type: AppType
    app_time: str
    app_time_ms: int
    order_no: OrderId
    ebp_code: str
    ebc_code: str
    goods_value: int
    freight: int
    discount: int
    tax_total: int
    actural_paid: int
    currency: str
    buyer_reg_no: str
    buyer_name: str
    buyer_id_type: str
    buyer_id_number: str
    buyer_telephone: str
    pay_code: str | None
    pay_transaction_id: str | None
    consignee: str
    consignee_telephone: str
    consignee_address: str
    items: tuple[Item, ...]

    kind: DocKind = "order"


class Payment(NamedTuple):
    """CEB411 payment from the payment company."""

    guid: str
    app_type: AppType
    app_time: str
    app_time_ms: int
    order_no: OrderId
    pay_code: str
    pay_transaction_id: str
    ebp_code: str
    payer_id_type: str
    payer_id_number: str
    payer_name: str
    amount_paid: int
    currency: str
    pay_time: str

    kind: DocKind = "payment"


class Waybill(NamedTuple):
    """CEB511 waybill from the logistics company."""

    guid: str
    app_type: AppType
    app_time: str
    app_time_ms: int
    order_no: OrderId
    logistics_code: str
    logistics_no: str
    freight: int
    insured_fee: int
    currency: str
    weight: Decimal
    pack_no: int
    consignee: str
    consignee_telephone: str
    consignee_address: str

    kind: DocKind = "waybill"


Document = Order | Payment | Waybill


class Declaration(NamedTuple):
    """One customs decision (or one DOCUMENT_AFTER_DECISION review record).

    `decided_at_ms` is the wall clock and the only field that may differ between two
    publications of the same decision; everything else is a function of the documents.
    `received_at_ms` is the Kafka timestamp of the document that completed the set, when
    the shell knows it (the worker); None in the embedded runner and for MISSING_*.
    """

    declaration_id: str
    order_no: OrderId
    ebp_code: str | None
    ebc_code: str | None
    pay_code: str | None
    pay_transaction_id: str | None
    logistics_code: str | None
    logistics_no: str | None
    buyer_id_number: str | None
    status: Status
    reasons: tuple[str, ...]
    dutiable_value: int | None
    tax: int | None
    inspection: bool
    documents: dict[DocKind, str | None]
    event_time_ms: int
    decided_at_ms: int
    received_at_ms: int | None = None

    @property
    def return_status(self) -> int:
        """The CEB622 receipt code of the status."""
        return RETURN_STATUS[self.status]

    @property
    def matched(self) -> bool:
        """True for the matched topic (no reason), False for the flagged one."""
        return not self.reasons


_Tuple = TypeVar("_Tuple", bound=tuple[Any, ...])


class TupleNew(Protocol):
    """The type of `tuple.__new__`, which the hot paths call to build a NamedTuple.

    `tuple.__new__(Kind, (every field, in order))`: a NamedTuple's generated `__new__` is a
    Python function (a third of a microsecond a call). Each module binds it as
    `_new: Final[TupleNew] = tuple.__new__`, which compiled code reads without a lookup.
    """

    def __call__(self, cls: type[_Tuple], fields: Iterable[Any], /) -> _Tuple:
        """A `cls` holding `fields`."""
        ...
