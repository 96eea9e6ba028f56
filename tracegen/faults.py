"""Fault injection: each kind turns one order's three base rows into its messages.

A fault function returns `(file, time, row)` triples; rows are fragment lists
(see `tracegen.docs`). Labels are not decided here: the oracle re-reads the bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.idcard import CHECK_CHARACTERS, check_character
from tracegen.context import Context, Out, Row
from tracegen.docs import (
    I_GCODE,
    I_TOTAL,
    O_EBP,
    O_ID,
    O_ITEMS,
    O_PAID,
    O_REF,
    O_TAX,
    P_AMT,
    P_CODE,
    P_EBP,
    P_ID,
    P_NAME,
    P_TX,
    W_CADDR,
    W_CNEE,
    W_CTEL,
    W_FREIGHT,
    fen_of,
    money,
    render_items,
)
from tracegen.vocab import FORBIDDEN_GCODES, PLATFORMS

Fault = Callable[[Context, int], Out]
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _q(text: str) -> str:
    return '"' + text + '"'


def _money(ctx: Context, fen: int) -> str:
    return money(fen, ctx.rnd.random() < 0.5)


def _with(out: Out, kind: int, field: int, value: str) -> Out:
    out[kind][2][field] = value
    return out


def amount_formula(ctx: Context, i: int) -> Out:
    out, paid = ctx.base(i), ctx.paid[i] + ctx.rnd.choice((1, -1))
    _with(out, 0, O_PAID, _money(ctx, paid))
    return _with(out, 1, P_AMT, _money(ctx, paid))


def item_total(ctx: Context, i: int) -> Out:
    items = ctx.items(i)
    k = ctx.rnd.randrange(len(items))
    items[k][I_TOTAL] = _money(ctx, fen_of(str(items[k][I_TOTAL])) + 1)
    return _with(ctx.base(i), 0, O_ITEMS, render_items(items))


def paid_amount(ctx: Context, i: int) -> Out:
    return _with(ctx.base(i), 1, P_AMT, _money(ctx, ctx.paid[i] + ctx.rnd.randint(1, 5000)))


def buyer_payer(ctx: Context, i: int) -> Out:
    out, j = ctx.base(i), ctx.other_person()
    if ctx.rnd.random() < 0.5:
        _with(out, 1, P_ID, _q(ctx.people.id_number[j]))
    return _with(out, 1, P_NAME, _q(ctx.people.name[j] + "某"))


def platform(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    others = [p for p in PLATFORMS if _q(p) != out[0][2][O_EBP]]
    return _with(out, 1, P_EBP, _q(ctx.rnd.choice(others)))


def payment_reference(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    code, tx = out[1][2][P_CODE], out[1][2][P_TX]
    _with(out, 0, O_REF, f',"payCode":{code},"payTransactionId":{tx}')
    return _with(out, 1, P_TX, tx[:-3] + f'{(int(tx[-3:-1]) + 1) % 100:02d}"')


def consignee(ctx: Context, i: int) -> Out:
    out, j = ctx.base(i), ctx.other_person()
    field, value = ctx.rnd.choice(
        ((W_CNEE, ctx.people.name[j] + "某"), (W_CTEL, ctx.people.phone[j]), (W_CADDR, ctx.people.address[j]))
    )
    return _with(out, 2, field, _q(value))


def consignee_variant(ctx: Context, i: int) -> Out:
    """Spelling variants that normalise equal: no reason applies."""
    out = ctx.base(i)
    pick = ctx.rnd.randrange(4)
    if pick == 0:
        return _with(out, 2, W_CTEL, out[2][2][W_CTEL].translate(FULL_WIDTH))
    if pick == 1:
        return _with(out, 2, W_CADDR, out[2][2][W_CADDR].replace(" ", "  ")[:-1] + ' "')
    if pick == 2:
        return _with(out, 1, P_NAME, out[1][2][P_NAME][:-1] + '  "')
    pid = out[1][2][P_ID]
    return _with(
        out, 1, P_ID, pid.lower() if pid.endswith('X"') else pid[:4] + pid[4:-2].translate(FULL_WIDTH) + pid[-2:]
    )


def freight(ctx: Context, i: int) -> Out:
    return _with(ctx.base(i), 2, W_FREIGHT, _money(ctx, ctx.freight[i] + ctx.rnd.randint(1, 1000)))


def invalid_id(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    good = out[0][2][O_ID][1:-1]
    pick = ctx.rnd.randrange(3)
    if pick == 0:
        first17, check = good[:17], CHECK_CHARACTERS[(CHECK_CHARACTERS.index(good[17]) + 1) % 11]
    else:
        birth = good[6:10] + "0230" if pick == 1 else str(ctx.first_day.year + 1) + good[10:14]
        first17 = good[:6] + birth + good[14:17]
        check = check_character(first17)
    bad = _q(first17 + check)
    _with(out, 0, O_ID, bad)
    return _with(out, 1, P_ID, bad)


def tax(ctx: Context, i: int) -> Out:
    out, delta = ctx.base(i), ctx.rnd.choice((1, -1)) if ctx.tax[i] > 0 else 1
    _with(out, 0, O_TAX, _money(ctx, ctx.tax[i] + delta))
    _with(out, 0, O_PAID, _money(ctx, ctx.paid[i] + delta))
    return _with(out, 1, P_AMT, _money(ctx, ctx.paid[i] + delta))


def not_positive(ctx: Context, i: int) -> Out:
    items = ctx.items(i)
    items[ctx.rnd.randrange(len(items))][I_GCODE] = ctx.rnd.choice(FORBIDDEN_GCODES)
    return _with(ctx.base(i), 0, O_ITEMS, render_items(items))


def clean(ctx: Context, i: int) -> Out:
    return ctx.base(i)


def _missing(kind: int) -> Fault:
    return lambda ctx, i: [m for m in ctx.base(i) if m[0] != kind]


def redelivery(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    return out + [(k, t, list(r)) for k, t, r in out if ctx.rnd.random() < 0.6]


def _bad(ctx: Context, kind: int, i: int, row: Row) -> Row:
    row = list(row)
    if kind == 1:
        row[P_AMT] = _money(ctx, ctx.paid[i] + ctx.rnd.randint(1, 999))
    else:
        row[W_FREIGHT] = _money(ctx, ctx.freight[i] + ctx.rnd.randint(1, 999))
    return row


def _sequence(ctx: Context, i: int, kind: int) -> tuple[int, int, Row, Row]:
    """(t0, other kind, row of kind, row of the other): order first, then kind, other last."""
    t0 = ctx.times[0][i]
    return t0, 3 - kind, ctx.row(kind, i), ctx.row(3 - kind, i)


def modify(mode: str) -> Fault:
    """fix: bad then corrected; break: good then bad; stale: a bad modify with the same appTime."""

    def fault(ctx: Context, i: int) -> Out:
        kind = ctx.rnd.choice((1, 2))
        t0, other, row, other_row = _sequence(ctx, i, kind)
        t1 = t0 + ctx.rnd.randint(1, 30)
        t2 = t1 if mode == "stale" else t1 + ctx.rnd.randint(1, 60)
        first, second = (_bad(ctx, kind, i, row), row) if mode == "fix" else (row, _bad(ctx, kind, i, row))
        t3 = t2 + ctx.rnd.randint(1, 300)
        return [
            (0, t0, ctx.row(0, i)),
            (kind, t1, ctx.renew(kind, first, t1, 1)),
            (kind, t2, ctx.renew(kind, second, t2, 2)),
            (other, t3, ctx.renew(other, other_row, t3, 1)),
        ]

    return fault


def withdraw(resend: bool) -> Fault:
    def fault(ctx: Context, i: int) -> Out:
        kind = ctx.rnd.randrange(3)
        first, last = [k for k in range(3) if k != kind]
        t0 = ctx.times[0][i]
        t1, t2, t3 = t0 + 1, t0 + ctx.rnd.randint(2, 60), t0 + ctx.rnd.randint(61, 120)
        row = ctx.renew(kind, ctx.row(kind, i), t1, 1)
        out = [(first, t0, ctx.renew(first, ctx.row(first, i), t0, 1)), (kind, t1, row)]
        out.append((kind, t2, ctx.renew(kind, row, t2, 3)))
        if resend:
            out.append((kind, t2 + 1, ctx.renew(kind, row, t2 + 1, 1)))
        out.append((last, t3 + 5, ctx.renew(last, ctx.row(last, i), t3 + 5, 1)))
        return out

    return fault


def after_decision(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    kind = ctx.rnd.randrange(3)
    t = max(m[1] for m in out) + ctx.rnd.randint(1, 1800)
    return out + [(kind, t, ctx.renew(kind, out[kind][2], t, 2))]


def after_window(ctx: Context, i: int) -> Out:
    out = ctx.base(i)
    kind = ctx.rnd.randrange(3)
    kept = [m for m in out if m[0] != kind]
    t = min(m[1] for m in kept) + 86_400 + ctx.rnd.randint(60, 3600)
    return kept + [(kind, t, ctx.renew(kind, out[kind][2], t, 1))]


FAULTS: dict[str, Fault] = {
    "amount-formula": amount_formula,
    "item-total": item_total,
    "paid-amount": paid_amount,
    "buyer-payer": buyer_payer,
    "platform": platform,
    "payment-reference": payment_reference,
    "consignee": consignee,
    "consignee-variant": consignee_variant,
    "freight": freight,
    "invalid-id": invalid_id,
    "tax": tax,
    "single-limit": clean,
    "single-limit-boundary": clean,
    "not-on-positive-list": not_positive,
    "missing-order": _missing(0),
    "missing-payment": _missing(1),
    "missing-waybill": _missing(2),
    "redelivery": redelivery,
    "modify-fix": modify("fix"),
    "modify-break": modify("break"),
    "modify-stale": modify("stale"),
    "withdraw": withdraw(resend=False),
    "withdraw-resend": withdraw(resend=True),
    "after-decision": after_decision,
    "after-window": after_window,
}
