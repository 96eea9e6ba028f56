"""The generator's typed columns: one numpy array per field, grouped by what they describe.

Per-order arrays have one entry per order (index = order index), per-item arrays one
entry per item (see `Items.start`). The tables are frozen (no field is re-bound), but
their arrays are plain numpy arrays: the fault plan edits a few prices, quantities and
freights of a `Basket` in place before its money is settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Texts = NDArray[np.object_]  # Python str objects
Flags = NDArray[np.bool_]
Column = NDArray[Any]  # one field of many documents: JSON fragments (str), item numbers (int)
Columns = list[Column]  # a document's fields, in its template's order (see `docs`)


@dataclass(frozen=True, slots=True)
class People:
    """Persons by index: buyers, consignees and payers are all drawn from here."""

    name: Texts
    id_number: Texts
    phone: Texts
    address: Texts


@dataclass(frozen=True, slots=True)
class Parties:
    """Who takes part in each order: indices into `people`."""

    people: People
    buyer: Ints
    consignee: Ints


@dataclass(frozen=True, slots=True)
class Times:
    """Seconds after the trace's first midnight, per order."""

    order: Ints  # the order's appTime
    pay: Ints  # payTime inside the payment
    payment: Ints  # the payment's appTime (pushed in batches)
    waybill: Ints  # the waybill's appTime

    def documents(self) -> tuple[Ints, Ints, Ints]:
        """appTimes of the (order, payment, waybill) documents: the files' order."""
        return self.order, self.payment, self.waybill


@dataclass(frozen=True, slots=True)
class Items:
    """Every order's items as flat arrays: order i owns items start[i]:start[i + 1]."""

    start: Ints  # orders + 1 offsets
    gcode: Texts  # 10-digit HS code
    name: Texts
    price: Ints  # fen per unit
    qty10: Ints  # quantity in tenths


@dataclass(frozen=True, slots=True)
class Basket:
    """What each order buys, before its money is settled."""

    items: Items
    freight: Ints  # fen per order


@dataclass(frozen=True, slots=True)
class Money:
    """Settled money in fen: per item (`item_total`), else per order."""

    item_total: Ints  # price x qty, half-up
    goods: Ints  # sum of the item totals
    freight: Ints
    discount: Ints
    tax: Ints
    paid: Ints  # goods + freight + tax - discount

    @property
    def dutiable(self) -> Ints:
        """Goods plus freight: what the single limit and the annual quota count."""
        return self.goods + self.freight


@dataclass(frozen=True, slots=True)
class Orders:
    """The base orders of a trace: numbers, times, parties, items and money."""

    number: Texts  # orderNo
    times: Times
    parties: Parties
    items: Items
    money: Money

    @property
    def count(self) -> int:
        return len(self.number)


@dataclass(frozen=True, slots=True)
class Fragments:
    """Fragment columns of every order's three base documents."""

    order: Columns
    payment: Columns
    waybill: Columns

    def of(self, file: int) -> Columns:
        """The columns of file 0, 1 or 2 (orders, payments, waybills)."""
        return (self.order, self.payment, self.waybill)[file]
