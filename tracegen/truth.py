"""labels.jsonl: the oracle's decision for every order, then the annual quota across orders.

Clean orders need no oracle (their documents are the base rows); a faulted order's
messages are replayed and its documents re-read (`tracegen.labels`). The annual quota
is then applied keyed like the pipeline's, in the contract's order: by the instant each
order's set became complete, then by order number as text (docs/CONTRACT.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.decisions import inspection_selected
from tracegen.assembly import FileOrder
from tracegen.labels import Msg, Outcome, dutiable, norm, reasons, settle, status
from tracegen.money import positive_list
from tracegen.presets import Regime
from tracegen.tables import Orders, Times

INSPECTION_SEED, INSPECTION_RATE = "clearance", 0.055
_CLEAN_LABEL = '{"orderNo":"%s","status":"%s","reasons":[]}'
Position = tuple[int, int, int]  # (appTime, file, line): where a decision happens in the merged input


@dataclass(frozen=True, slots=True)
class _Ledger:
    """Every order's label so far; the lists are filled in place."""

    regime: Regime
    files: Sequence[FileOrder]
    found: list[list[str] | None]  # None or []: no reason (yet)
    decided_at: dict[int, Position]
    duty: list[int]  # dutiable fen
    key: list[str]  # the annual quota's key: the buyerIdNumber on the wire, normalised
    number: list[str]  # orderNo: ties of the same completion instant are counted by it

    def complete(self, i: int, outcome: Outcome, positive: frozenset[str]) -> None:
        """Record faulted order i from its replayed messages."""
        if outcome.reasons is not None:
            self.found[i] = outcome.reasons
            return
        docs = [d for d in outcome.docs if d is not None]
        self.found[i] = reasons(docs, self.regime.single_limit_fen, self.regime.tax_permille, positive)
        self.duty[i], c = dutiable(docs[0]), outcome.completing
        if c is None:
            raise RuntimeError("a complete order without its completing message")
        fo = self.files[c.file]
        self.decided_at[i] = (c.time, c.file, fo.line_no(fo.uid_pos[c.uid]))
        self.key[i] = norm(docs[0]["buyerIdNumber"]).upper()

    def apply_quota(self, times: Times) -> None:
        """ANNUAL_QUOTA_EXCEEDED for each complete order that takes its buyer past the limit."""
        limit = self.regime.annual_limit_fen
        complete = [i for i, r in enumerate(self.found) if not any(x.startswith("MISSING_") for x in r or [])]
        total: dict[str, int] = {}
        for i in complete:
            total[self.key[i]] = total.get(self.key[i], 0) + self.duty[i]
        hot = [i for i in complete if total[self.key[i]] > limit]
        for i in hot:
            if i not in self.decided_at:
                self.decided_at[i] = self._base_decision(i, times)
        used: dict[str, int] = {}
        for i in sorted(hot, key=lambda i: (self.decided_at[i][0], self.number[i])):
            r, key = self.found[i] or [], self.key[i]
            if used.get(key, 0) + self.duty[i] > limit:
                self.found[i] = sorted([*r, "ANNUAL_QUOTA_EXCEEDED"])
            elif not r:
                used[key] = used.get(key, 0) + self.duty[i]

    def _base_decision(self, i: int, times: Times) -> Position:
        """A clean order is decided at the last of its three base documents."""
        docs = times.documents()
        return max((int(docs[f][i]), f, fo.line_no(int(fo.base_pos[i]))) for f, fo in enumerate(self.files))


def label_lines(
    orders: Orders, messages: dict[int, list[Msg]], files: Sequence[FileOrder], regime: Regime
) -> list[str]:
    """labels.jsonl lines: one per order, then one per DOCUMENT_AFTER_DECISION record."""
    order_no: list[str] = orders.number.tolist()
    parties = orders.parties
    ledger = _Ledger(
        regime=regime,
        files=files,
        found=[None] * orders.count,
        decided_at={},
        duty=orders.money.dutiable.tolist(),
        key=parties.people.id_number[parties.buyer].tolist(),
        number=order_no,
    )
    positive = positive_list()
    late: list[dict[str, Any]] = []
    for i, msgs in messages.items():
        outcome = settle(msgs)
        late += [{"orderNo": order_no[i], "status": "REVIEW", "reasons": ["DOCUMENT_AFTER_DECISION"],
                  "afterDecision": True, "guid": g} for g in outcome.after]  # fmt: skip
        ledger.complete(i, outcome, positive)
    ledger.apply_quota(orders.times)
    return [_label(no, r or []) for no, r in zip(order_no, ledger.found, strict=True)] + [
        orjson.dumps(x).decode() for x in late
    ]


def _label(order_no: str, reasons: list[str]) -> str:
    if reasons:
        return orjson.dumps({"orderNo": order_no, "status": status(reasons, False), "reasons": reasons}).decode()
    inspected = inspection_selected(order_no, INSPECTION_SEED, INSPECTION_RATE)
    return _CLEAN_LABEL % (order_no, "INSPECTION" if inspected else "RELEASED")
