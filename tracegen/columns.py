"""Fragment columns of every item and of the three base documents of every order.

Columns are numpy object arrays of JSON fragments in template field order (see
`docs`), gathered and rendered chunk by chunk when the files are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracegen.docs import ITEM_T, O_CADDR, O_CNEE, O_CTEL, O_ID, O_NAME, O_NO, guids, quoted, render, time_frags
from tracegen.tables import Columns, Flags, Fragments, Ints, Items, Money, Orders, Texts
from tracegen.text import compose, const, digits, money_fragments, numbered, table
from tracegen.vocab import COUNTRIES, LOGISTICS, PAY_COMPANIES, PLATFORMS, SELLERS, UNITS


@dataclass(frozen=True, slots=True)
class _Draws:
    """Random fragments the documents share, drawn in one fixed order."""

    guid: tuple[Texts, Texts, Texts]  # per file
    platform: Texts  # ebpCode
    seller: Texts  # ebcCode
    pay_code: Texts
    transaction: Texts  # payTransactionId
    reference: Texts  # the order's payCode and payTransactionId fields (10 %: none)
    as_string: tuple[Flags, Flags, Flags]  # per file: money as '"12.30"' rather than 12.3


def fragments(rng: np.random.Generator, orders: Orders, *, items_json: Texts, day0: np.datetime64) -> Fragments:
    """The base documents' fragment columns.

    items_json: every order's rendered items (see `render_all_items`); day0: the offsets' midnight.
    """
    draws = _draw(rng, orders.count, day0)
    order = _order_columns(orders, draws, items_json, day0)
    payment = _payment_columns(orders, draws, order, day0)
    waybill = _waybill_columns(rng, orders, draws, order=order, day0=day0)
    return Fragments(order=order, payment=payment, waybill=waybill)


def item_columns(rng: np.random.Generator, items: Items, money: Money) -> Columns:
    """Fragment columns of every item, in ITEM_T field order."""
    start, k, qty10 = items.start, len(items.price), items.qty10
    owner = np.repeat(np.arange(len(start) - 1), np.diff(start))
    gnum = np.arange(k) - start[owner] + 1
    sku = numbered("SKU", rng.integers(0, 10**6, k), 6)
    tenth = compose(k, [digits(qty10 // 10), (const(".")[0], 1), digits(qty10 % 10)])
    qty = np.where(qty10 % 10 == 0, compose(k, [digits(qty10 // 10)]), tenth)
    style = _style(rng, k)
    price, total = money_fragments(items.price, style), money_fragments(money.item_total, style)
    units = table(UNITS, rng.integers(0, len(UNITS), k))
    country = table(COUNTRIES, rng.integers(0, len(COUNTRIES), k))
    return [gnum, sku, items.name, items.gcode, qty, units, price, total, country]


def render_all_items(cols: Columns, start: Ints, chunk: int = 200_000) -> Texts:
    """The `items` array body of every order."""
    out = []
    for a in range(0, len(start) - 1, chunk):
        b = min(a + chunk, len(start) - 1)
        rendered = render(ITEM_T, cols, np.arange(start[a], start[b]))
        s0 = int(start[a])
        bounds = zip((start[a:b] - s0).tolist(), (start[a + 1 : b + 1] - s0).tolist(), strict=True)
        out.append(np.array([",".join(rendered[s:e]) for s, e in bounds], dtype=object))
    return np.concatenate(out) if out else np.array([], dtype=object)


def _draw(rng: np.random.Generator, n: int, day0: np.datetime64) -> _Draws:
    guid = (quoted(guids(rng, n)), quoted(guids(rng, n)), quoted(guids(rng, n)))
    platform, seller = _pick(rng, PLATFORMS, n), _pick(rng, SELLERS, n)
    pay_code = _pick(rng, PAY_COMPANIES, n)
    day = str(day0)[:10].replace("-", "")
    tx = quoted(numbered(day + "2100100", np.arange(n) * 7919 % 10**13, 13))
    ref = ',"payCode":' + pay_code + ',"payTransactionId":' + tx
    ref = np.where(rng.random(n) < 0.1, _const("", n), ref)
    as_string = (_style(rng, n), _style(rng, n), _style(rng, n))
    return _Draws(guid, platform, seller, pay_code, tx, ref, as_string)


def _order_columns(orders: Orders, draws: _Draws, items_json: Texts, day0: np.datetime64) -> Columns:
    people, buyer, cnee = orders.parties.people, orders.parties.buyer, orders.parties.consignee
    name, tel, addr = quoted(people.name), quoted(people.phone), quoted(people.address)
    money, style = orders.money, draws.as_string[0]
    return [
        draws.guid[0], _const("1", orders.count), time_frags(orders.times.order, day0), quoted(orders.number),
        draws.platform, draws.seller, money_fragments(money.goods, style), money_fragments(money.freight, style),
        money_fragments(money.discount, style), money_fragments(money.tax, style), money_fragments(money.paid, style),
        quoted(numbered("u", buyer, 9)), name[buyer], quoted(people.id_number)[buyer], tel[buyer], draws.reference,
        name[cnee], tel[cnee], addr[cnee], items_json,
    ]  # fmt: skip


def _payment_columns(orders: Orders, draws: _Draws, order: Columns, day0: np.datetime64) -> Columns:
    """Payment fragments; the payer is the buyer (the order's fragments are shared)."""
    return [
        draws.guid[1], _const("1", orders.count), time_frags(orders.times.payment, day0), draws.pay_code,
        draws.transaction, order[O_NO], draws.platform, order[O_ID], order[O_NAME],
        money_fragments(orders.money.paid, draws.as_string[1]), time_frags(orders.times.pay, day0),
    ]  # fmt: skip


def _waybill_columns(
    rng: np.random.Generator, orders: Orders, draws: _Draws, *, order: Columns, day0: np.datetime64
) -> Columns:
    """Waybill fragments (the consignee's are the order's); draws its own randomness, last."""
    n = orders.count
    grams = rng.integers(100, 5000, n)
    weight = compose(n, [digits(grams // 1000), const("."), digits(grams % 1000, 3)])
    return [
        draws.guid[2], _const("1", n), time_frags(orders.times.waybill, day0), _pick(rng, LOGISTICS, n),
        quoted(numbered("YT", rng.integers(0, 10**12, n), 12)), order[O_NO],
        money_fragments(orders.money.freight, draws.as_string[2]), _const("0", n), weight,
        order[O_CNEE], order[O_CTEL], order[O_CADDR],
    ]  # fmt: skip


def _pick(rng: np.random.Generator, values: tuple[str, ...], n: int) -> Texts:
    return quoted(list(values))[rng.integers(0, len(values), n)]


def _style(rng: np.random.Generator, n: int) -> Flags:
    return rng.random(n) < 0.5


def _const(value: str, n: int) -> Texts:
    return np.full(n, value, dtype=object)
