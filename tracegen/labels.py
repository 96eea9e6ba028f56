"""Ground truth for generated traces: an independent oracle of docs/CONTRACT.md.

`settle` replays one order's own messages (window, redelivery, modify, withdraw,
after-decision) and `reasons` re-parses the rendered documents and applies the
rules, so a label says what the bytes imply, not what the fault meant to do.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

WINDOW_S = 86_400
KINDS = ("ORDER", "PAYMENT", "WAYBILL")
REJECTING = frozenset(
    {"INVALID_ID_NUMBER", "SINGLE_LIMIT_EXCEEDED", "NOT_ON_POSITIVE_LIST", "ANNUAL_QUOTA_EXCEEDED"}
    | {f"MISSING_{k}" for k in KINDS}
)
# The oracle checks the core, so it keeps its own copy of the GB 11643 check rather than
# pipeline.idcard's (the generator itself uses the core's constants).
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(slots=True)
class Msg:
    """One message of one order: (time, file, seq) is its merge position."""

    time: int
    file: int
    seq: int
    guid: str
    app_type: int
    text: str
    uid: int = -1


@dataclass(slots=True)
class Outcome:
    """What the pipeline decides for one order."""

    reasons: list[str] | None = None  # None: complete, rules still to apply
    docs: list[dict[str, Any] | None] = field(default_factory=lambda: [None, None, None])
    completing: Msg | None = None
    after: list[str] = field(default_factory=list)  # guids of DOCUMENT_AFTER_DECISION records


def settle(msgs: list[Msg]) -> Outcome:
    """Replay one order's messages in merge order (the join's life cycle)."""
    out = Outcome()
    slots: list[Msg | None] = [None, None, None]
    seen: set[str] = set()
    first: int | None = None
    decided = False
    for m in sorted(msgs, key=lambda m: (m.time, m.file, m.seq)):
        if not decided and first is not None and m.time > first + WINDOW_S:
            decided = True
            out.reasons = [f"MISSING_{KINDS[k]}" for k in range(3) if slots[k] is None]
        if m.guid in seen:
            continue
        seen.add(m.guid)
        if decided:
            out.after.append(m.guid)
            continue
        first = m.time if first is None else first
        current = slots[m.file]
        if m.app_type == 3:
            slots[m.file] = None
        elif current is None or m.time > current.time:
            slots[m.file] = m
        if all(s is not None for s in slots):
            decided, out.completing = True, m
            out.docs = [orjson.loads(s.text) for s in slots if s is not None]
    if not decided:
        out.reasons = [f"MISSING_{KINDS[k]}" for k in range(3) if slots[k] is None]
    return out


def status(reasons: list[str], inspected: bool) -> str:
    if not reasons:
        return "INSPECTION" if inspected else "RELEASED"
    return "REJECTED" if any(r in REJECTING for r in reasons) else "REVIEW"


def fen(value: object) -> int:
    if isinstance(value, str):
        whole, _, cents = value.partition(".")
        return int(whole) * 100 + int((cents + "00")[:2])
    if isinstance(value, float):
        return int(Decimal(repr(value)) * 100)
    if isinstance(value, int):
        return value * 100
    raise TypeError(f"not a JSON number: {value!r}")


def norm(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


def valid_id(raw: str, order_day: str) -> bool:
    """GB 11643: 17 digits, check char (MOD 11-2), a real birth date not after the order."""
    s = norm(raw).upper()
    if len(s) != 18 or not s[:17].isdigit() or not s.isascii():
        return False
    if _ID_CHECK[sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS, strict=True)) % 11] != s[17]:
        return False
    y, m, d = int(s[6:10]), int(s[10:12]), int(s[12:14])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return 1 <= m <= 12 and 1 <= d <= days[m - 1] and s[6:14] <= order_day


def dutiable(order: dict[str, Any]) -> int:
    return fen(order["goodsValue"]) + fen(order["freight"])


def reasons(docs: list[dict[str, Any]], single_fen: int, tax_permille: int, positive: frozenset[str]) -> list[str]:
    """All rule codes (without the annual quota) for a complete set of documents."""
    o, p, w = docs
    found = _money_reasons(o, p, w, tax_permille) | _party_reasons(o, p, w)
    if dutiable(o) > single_fen:
        found.add("SINGLE_LIMIT_EXCEEDED")
    if any(i["gcode"][:8] not in positive for i in o["items"]):
        found.add("NOT_ON_POSITIVE_LIST")
    return sorted(found)


def _money_reasons(o: dict[str, Any], p: dict[str, Any], w: dict[str, Any], tax_permille: int) -> set[str]:
    """The amount, item total, paid amount, freight and tax rules."""
    found = set()
    goods, freight, tax, paid = (fen(o[k]) for k in ("goodsValue", "freight", "taxTotal", "acturalPaid"))
    if paid != goods + freight + tax - fen(o["discount"]):
        found.add("AMOUNT_FORMULA_MISMATCH")
    totals = [fen(i["totalPrice"]) for i in o["items"]]
    for item, total in zip(o["items"], totals, strict=True):
        exact = Decimal(fen(item["price"])) * Decimal(repr(item["qty"]))
        if total != int((exact * 2 + 1) // 2):
            found.add("ITEM_TOTAL_MISMATCH")
    if sum(totals) != goods:
        found.add("ITEM_TOTAL_MISMATCH")
    if paid != fen(p["amountPaid"]):
        found.add("PAID_AMOUNT_MISMATCH")
    if freight != fen(w["freight"]):
        found.add("FREIGHT_MISMATCH")
    if tax != (dutiable(o) * tax_permille + 500) // 1000:
        found.add("TAX_MISMATCH")
    return found


def _party_reasons(o: dict[str, Any], p: dict[str, Any], w: dict[str, Any]) -> set[str]:
    """The buyer/payer, platform, payment reference, consignee and ID number rules."""
    found = set()
    if norm(o["buyerIdNumber"]).upper() != norm(p["payerIdNumber"]).upper() or norm(o["buyerName"]) != norm(
        p["payerName"]
    ):
        found.add("BUYER_PAYER_MISMATCH")
    if norm(o["ebpCode"]) != norm(p["ebpCode"]):
        found.add("PLATFORM_MISMATCH")
    for key in ("payTransactionId", "payCode"):
        if norm(o.get(key)) and norm(o.get(key)) != norm(p[key]):
            found.add("PAYMENT_REFERENCE_MISMATCH")
    if any(norm(o[k]) != norm(w[k]) for k in ("consignee", "consigneeTelephone", "consigneeAddress")):
        found.add("CONSIGNEE_MISMATCH")
    if not valid_id(o["buyerIdNumber"], o["appTime"][:8]):
        found.add("INVALID_ID_NUMBER")
    return found
