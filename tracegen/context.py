"""What a fault may read of the base orders: rows, times, people and money, and new guids."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from tracegen.docs import GUID_FIELD, TIME_FIELD, TYPE_FIELD, guids
from tracegen.tables import Columns, Fragments, Orders, People

Row = list[str]  # one document's fragments, in its template's field order
Out = list[tuple[int, int, Row]]  # a fault's messages: (file, appTime, row)


@dataclass(frozen=True, slots=True)
class Context:
    """What a fault may read: base rows and times, people, money; a guid supply and a random source."""

    fragments: Fragments
    item_fragments: Columns  # every item's, in ITEM_T order
    item_start: list[int]
    times: tuple[list[int], list[int], list[int]]  # appTime per file and order
    paid: list[int]
    freight: list[int]
    tax: list[int]
    people: People
    first_day: date  # of the trace: time 0
    guids: Iterator[str]
    rnd: random.Random

    def row(self, kind: int, i: int) -> Row:
        return [str(col[i]) for col in self.fragments.of(kind)]

    def base(self, i: int) -> Out:
        return [(k, self.times[k][i], self.row(k, i)) for k in range(3)]

    def items(self, i: int) -> list[list[object]]:
        """Order i's item rows: fragments in ITEM_T order, editable."""
        return [[c[j] for c in self.item_fragments] for j in range(self.item_start[i], self.item_start[i + 1])]

    def renew(self, kind: int, row: Row, t: int, app_type: int) -> Row:
        """A copy of `row` as a new document: new guid, appType and appTime."""
        row = list(row)
        row[GUID_FIELD[kind]] = '"' + next(self.guids) + '"'
        row[TYPE_FIELD[kind]] = str(app_type)
        row[TIME_FIELD[kind]] = self.time_fragment(t)
        return row

    def time_fragment(self, t: int) -> str:
        """'"YYYYMMDDhhmmss"' of second offset t."""
        d, r = divmod(t, 86_400)
        day = (self.first_day + timedelta(days=d)).strftime("%Y%m%d")
        return f'"{day}{r // 3600:02d}{r // 60 % 60:02d}{r % 60:02d}"'

    def other_person(self) -> int:
        return self.rnd.randrange(len(self.people.name))


def context(
    rng: np.random.Generator, orders: Orders, fragments: Fragments, *, items: Columns, seed: int, first_day: date
) -> Context:
    """The faults' view of the base orders (items: their fragment columns); draws new guids from `rng`."""
    money = orders.money
    return Context(
        fragments=fragments,
        item_fragments=items,
        item_start=orders.items.start.tolist(),
        times=(orders.times.order.tolist(), orders.times.payment.tolist(), orders.times.waybill.tolist()),
        paid=money.paid.tolist(),
        freight=money.freight.tolist(),
        tax=money.tax.tolist(),
        people=orders.parties.people,
        first_day=first_day,
        guids=iter(guids(rng, 4 * orders.count // 10 + 1000)),
        rnd=random.Random(seed),  # noqa: S311 - synthetic data, not security
    )
