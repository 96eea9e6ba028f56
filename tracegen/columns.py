"""Fragment columns of the three base documents of every order (vectorised).

Columns are numpy object arrays of fragments, gathered and rendered chunk by
chunk when the files are written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracegen import base as B
from tracegen import docs as D
from tracegen import text as T
from tracegen import vocab as V

Cols = list[np.ndarray]


def _pick(rng: np.random.Generator, values: tuple[str, ...], n: int) -> np.ndarray:
    return D.quoted(list(values))[rng.integers(0, len(values), n)]


def numbered(prefix: str, values: np.ndarray, width: int) -> np.ndarray:
    return T.numbered(prefix, values, width)


def _style(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random(n) < 0.5


def _const(value: str, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object)


def item_columns(rng: np.random.Generator, m: dict[str, Any]) -> Cols:
    start, k = m["start"], len(m["price"])
    owner = np.repeat(np.arange(len(start) - 1), np.diff(start))
    gnum = np.arange(k) - start[owner] + 1
    sku = numbered("SKU", rng.integers(0, 10**6, k), 6)
    tenth = T.compose(k, [T.digits(m["qty"] // 10), (T.const(".")[0], 1), T.digits(m["qty"] % 10)])
    qty = np.where(m["qty"] % 10 == 0, T.compose(k, [T.digits(m["qty"] // 10)]), tenth)
    style = _style(rng, k)
    price, total = D.money_frags(m["price"], style), D.money_frags(m["total"], style)
    units = T.table(V.UNITS, rng.integers(0, len(V.UNITS), k))
    country = T.table(V.COUNTRIES, rng.integers(0, len(V.COUNTRIES), k))
    return [gnum, sku, m["names"], m["gcodes"], qty, units, price, total, country]


def render_all_items(cols: Cols, start: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """The `items` array body of every order."""
    out = []
    for a in range(0, len(start) - 1, chunk):
        b = min(a + chunk, len(start) - 1)
        rendered = D.render(D.ITEM_T, cols, np.arange(start[a], start[b]))
        s0 = int(start[a])
        bounds = zip((start[a:b] - s0).tolist(), (start[a + 1 : b + 1] - s0).tolist(), strict=True)
        out.append(np.array([",".join(rendered[s:e]) for s, e in bounds], dtype=object))
    return np.concatenate(out) if out else np.array([], dtype=object)


def columns(
    rng: np.random.Generator, m: dict[str, Any], people: B.People, times: dict[str, Any], day0: np.datetime64
) -> tuple[Cols, Cols, Cols]:
    """(order, payment, waybill) fragment columns in template field order."""
    n = len(m["goods"])
    buyer, cnee = times["buyer"], times["consignee"]
    guid = [D.quoted(D.guids(rng, n)) for _ in range(3)]
    ones = _const("1", n)
    order_no = D.quoted(times["order_no"])
    name, idn = D.quoted(people.name), D.quoted(people.id_number)
    tel, addr = D.quoted(people.phone), D.quoted(people.address)
    ebp, ebc = _pick(rng, V.PLATFORMS, n), _pick(rng, V.SELLERS, n)
    pay_code = _pick(rng, V.PAY_COMPANIES, n)
    day = str(day0)[:10].replace("-", "")
    tx = D.quoted(numbered(day + "2100100", np.arange(n) * 7919 % 10**13, 13))
    ref = ',"payCode":' + pay_code + ',"payTransactionId":' + tx
    ref = np.where(rng.random(n) < 0.1, _const("", n), ref)
    reg = D.quoted(numbered("u", buyer, 9))
    so, sp, sw = _style(rng, n), _style(rng, n), _style(rng, n)
    cn, ct, ca = name[cnee], tel[cnee], addr[cnee]
    order = [
        guid[0], ones, D.time_frags(times["t_order"], day0), order_no, ebp, ebc,
        D.money_frags(m["goods"], so), D.money_frags(m["freight"], so), D.money_frags(m["discount"], so),
        D.money_frags(m["tax"], so), D.money_frags(m["paid"], so), reg, name[buyer], idn[buyer], tel[buyer],
        ref, cn, ct, ca, m["items_json"],
    ]  # fmt: skip
    payment = [
        guid[1], ones, D.time_frags(times["t_push"], day0), pay_code, tx, order_no, ebp,
        order[D.O_ID], order[D.O_NAME], D.money_frags(m["paid"], sp), D.time_frags(times["t_pay"], day0),
    ]  # fmt: skip
    grams = rng.integers(100, 5000, n)
    weight = T.compose(n, [T.digits(grams // 1000), T.const("."), T.digits(grams % 1000, 3)])
    waybill = [
        guid[2], ones, D.time_frags(times["t_waybill"], day0), _pick(rng, V.LOGISTICS, n),
        D.quoted(numbered("YT", rng.integers(0, 10**12, n), 12)), order_no,
        D.money_frags(m["freight"], sw), _const("0", n), weight, cn, ct, ca,
    ]  # fmt: skip
    return order, payment, waybill
