"""The annual quota stage: counting, the limit, idempotent repeats."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.codec import decode_candidate, decode_quota, encode_candidate, encode_quota
from pipeline.join import Candidate
from pipeline.quota import BuyerQuota, QuotaOrder, apply_quota
from pipeline.records import Declaration, OrderId, Status
from tests.pipeline.helpers import CONFIG

CFG = replace(CONFIG, inspection_rate=0.0)


def cand(n: int, dutiable: int, reasons: tuple[str, ...] = (), year: int = 2026) -> Candidate:
    status: Status = "RELEASED" if not reasons else "REVIEW"
    decl = Declaration(
        f"id{n}",
        OrderId(f"O{n}"),
        "E",
        "C",
        "P",
        "T",
        "L",
        "N",
        "ID",
        status,
        reasons,
        dutiable,
        0,
        False,
        {"order": "g", "payment": "h", "waybill": "i"},
        0,
        0,
    )
    return Candidate(decl, "ID", year)


def run(cands: list[Candidate]) -> tuple[BuyerQuota | None, list[Declaration]]:
    state, out = None, []
    for c in cands:
        result = apply_quota(state, c, CFG)
        state = result.state
        out.append(result.declaration)
    return state, out


def test_exactly_at_the_annual_limit_passes_one_fen_over_is_rejected() -> None:
    _, out = run([cand(1, 1_300_000), cand(2, 1_300_000), cand(3, 1)])
    assert [d.status for d in out] == ["RELEASED", "RELEASED", "REJECTED"]
    assert out[2].reasons == ("ANNUAL_QUOTA_EXCEEDED",)


def test_only_released_declarations_count() -> None:
    _, out = run([cand(1, 2_000_000, ("FREIGHT_MISMATCH",)), cand(2, 2_000_000)])
    assert [d.status for d in out] == ["REVIEW", "RELEASED"]
    _, out = run([cand(1, 2_000_000), cand(2, 2_000_000, ("FREIGHT_MISMATCH",))])
    assert out[1].reasons == ("ANNUAL_QUOTA_EXCEEDED", "FREIGHT_MISMATCH") and out[1].status == "REJECTED"


def test_new_year_starts_fresh() -> None:
    _, out = run([cand(1, 2_500_000, year=2025), cand(2, 2_500_000, year=2026)])
    assert [d.status for d in out] == ["RELEASED", "RELEASED"]


def test_a_repeated_candidate_yields_the_same_declaration_and_counts_once() -> None:
    state, out = run([cand(1, 1_500_000), cand(2, 1_500_000)])
    assert out[1].status == "REJECTED"
    again = apply_quota(state, cand(2, 1_500_000), CFG)
    assert again.declaration == out[1] and not again.changed
    again = apply_quota(state, cand(1, 1_500_000), CFG)
    assert again.declaration == out[0] and again.state == state


def test_codecs_round_trip() -> None:
    state, _ = run([cand(1, 100), cand(2, 200)])
    assert state is not None and decode_quota(encode_quota(state)) == state
    c = cand(3, 300, ("TAX_MISMATCH",))
    assert decode_candidate(encode_candidate(c)) == c


# ---- the order: (eventTime, orderNo), whatever the arrival order (docs/CONTRACT.md)


def _engine_verdicts(arrivals: list[tuple[str, str]]) -> list[tuple[str, bool]]:
    """Feed each (orderNo, appTime) as a clean trio (all three documents at appTime) through the
    embedded Engine with an annual limit that fits one order, and return the verdicts."""
    from pipeline.engine import Engine, Origin
    from pipeline.store import MemoryStore
    from tests.fixtures import docs

    engine = Engine(replace(CONFIG, annual_limit_fen=50_000, inspection_rate=0.0), MemoryStore(), MemoryStore())
    out: list[Declaration] = []
    offset = 0
    for order_no, app_time in arrivals:
        for kind, build in (("order", docs.order), ("payment", docs.payment), ("waybill", docs.waybill)):
            raw = docs.raw(build(order_no, app_time))
            out += engine.feed(kind, raw, Origin(kind, 0, offset), 1).declarations  # type: ignore[arg-type]
            offset += 1
    out += engine.close_all(1).declarations
    return [(d.order_no, "ANNUAL_QUOTA_EXCEEDED" in d.reasons) for d in out]


@pytest.mark.parametrize(
    ("arrivals", "verdicts"),
    [
        # same second, file order Z then A: A is counted first (orderNo as text)
        ([("TMZ", "20261111000005"), ("TMA", "20261111000005")], [("TMA", False), ("TMZ", True)]),
        ([("TMA", "20261111000005"), ("TMZ", "20261111000005")], [("TMA", False), ("TMZ", True)]),
        # one second apart: the earlier one first, whatever its number
        ([("TMZ", "20261111000005"), ("TMA", "20261111000006")], [("TMZ", False), ("TMA", True)]),
        # "TM10" < "TM9" as text
        ([("TM9", "20261111000005"), ("TM10", "20261111000005")], [("TM10", False), ("TM9", True)]),
    ],
)
def test_embedded_counts_in_event_time_then_order_number_order(
    arrivals: list[tuple[str, str]], verdicts: list[tuple[str, bool]]
) -> None:
    assert _engine_verdicts(arrivals) == verdicts


def test_quota_order_releases_strictly_below_the_watermark_in_key_order() -> None:
    held: QuotaOrder[tuple[str, int]] = QuotaOrder()
    for tag, (order_no, event_ms) in enumerate([("B", 20), ("A", 20), ("C", 10), ("D", 30)]):
        held.hold(event_ms, order_no, (order_no, tag))
    assert not held.due(10) and held.due(11)
    assert held.release(20) == [("C", 2)]
    assert held.release(21) == [("A", 1), ("B", 0)]
    assert len(held) == 1 and held.drain() == [("D", 3)]


@pytest.mark.parametrize("dutiable", [0, 1, CFG.annual_limit_fen, CFG.annual_limit_fen + 1])
@pytest.mark.parametrize("reasons", [(), ("TAX_MISMATCH",)])
def test_a_first_declaration_is_the_general_case_with_an_empty_state(dutiable: int, reasons: tuple[str, ...]) -> None:
    candidate = cand(1, dutiable, reasons)
    assert apply_quota(None, candidate, CFG) == apply_quota(BuyerQuota({}, {}), candidate, CFG)
