"""The annual quota stage: counting, the limit, idempotent repeats."""

from __future__ import annotations

from dataclasses import replace

from pipeline.codec import decode_candidate, decode_quota, encode_candidate, encode_quota
from pipeline.join import Candidate
from pipeline.quota import BuyerQuota, apply_quota
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
