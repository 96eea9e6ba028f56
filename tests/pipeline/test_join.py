"""The join state machine: arrival orders, redelivery, modify, withdraw, windows, late documents."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codec import decode_state, encode_state
from pipeline.config import HOUR_MS
from pipeline.engine import Engine, Origin, Outputs
from pipeline.join import Candidate, step
from pipeline.parsing import parse_order
from pipeline.records import Declaration
from pipeline.store import MemoryStore
from tests.fixtures import docs
from tests.pipeline.helpers import CONFIG

KINDS = {"order": docs.order, "payment": docs.payment, "waybill": docs.waybill}


def run(messages: list[tuple[str, dict[str, Any]]], close: bool = True) -> list[Declaration]:
    engine = Engine(CONFIG, MemoryStore(), MemoryStore())
    out: list[Declaration] = []
    for i, (kind, doc) in enumerate(messages):
        result = engine.feed(kind, docs.raw(doc), Origin(kind, 0, i), 1)  # type: ignore[arg-type]
        assert not result.dead_letters
        out += result.declarations
    if close:
        out += engine.close_all(1).declarations
    return out


def summary(decls: list[Declaration]) -> list[tuple[str, str, tuple[str, ...], str]]:
    return [(d.order_no, d.status, d.reasons, d.declaration_id) for d in decls]


TRIO = [("order", docs.order()), ("payment", docs.payment()), ("waybill", docs.waybill())]


def test_complete_set_is_decided_once_in_any_order() -> None:
    results = {tuple(summary(run(list(perm)))) for perm in itertools.permutations(TRIO)}
    assert len(results) == 1
    (only,) = results
    assert len(only) == 1 and only[0][1] in {"RELEASED", "INSPECTION"} and only[0][2] == ()


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(3)), st.lists(st.integers(0, 2), max_size=4), st.randoms())
def test_arrival_order_and_redelivery_never_change_the_decision(
    order: list[int], redeliver: list[int], rnd: Any
) -> None:
    base = summary(run(TRIO))
    messages = [TRIO[i] for i in order]
    for i in redeliver:  # the same document again, anywhere after its first copy
        first = messages.index(TRIO[i])
        messages.insert(rnd.randint(first + 1, len(messages)), TRIO[i])
    assert summary(run(messages)) == base


def test_window_closes_incomplete_with_missing_reasons() -> None:
    (decl,) = run([("payment", docs.payment())])
    assert decl.status == "REJECTED" and decl.reasons == ("MISSING_ORDER", "MISSING_WAYBILL")
    assert decl.event_time_ms == parse_order(docs.raw(docs.order(app_time="20261111000105"))).app_time_ms + 24 * HOUR_MS


def test_window_closes_when_event_time_passes_the_deadline_before_the_document_applies() -> None:
    late = docs.order(order_no="OTHER", app_time="20261112000106")  # 24h + 1s after the first payment
    decls = run(
        [
            ("order", docs.order()),
            ("payment", docs.payment()),
            ("order", late),
            ("waybill", docs.waybill(app_time="20261112000106")),
        ],
        close=False,
    )
    assert [d.reasons for d in decls] == [("MISSING_WAYBILL",), ("DOCUMENT_AFTER_DECISION",)]


def test_at_exactly_the_deadline_the_window_is_still_open() -> None:
    decls = run(
        [("order", docs.order()), ("payment", docs.payment()), ("waybill", docs.waybill(app_time="20261112000005"))],
    )
    assert len(decls) == 1 and decls[0].reasons == ()  # complete, not MISSING_WAYBILL


def test_document_after_decision_yields_one_review_record_and_redelivery_none() -> None:
    extra = docs.waybill(app_time="20261111001000", guid=docs.guid("w2"), appType=2)
    decls = run([*TRIO, ("waybill", extra), ("waybill", extra), ("payment", TRIO[1][1])])
    assert [d.status for d in decls][1:] == ["REVIEW"]
    assert decls[1].reasons == ("DOCUMENT_AFTER_DECISION",) and decls[1].documents["waybill"] == extra["guid"]


def test_modify_replaces_only_when_newer() -> None:
    bad = docs.payment(amountPaid="1.00")
    fixed = docs.payment(app_time="20261111000200", appType=2, guid=docs.guid("p2"))
    stale = docs.payment(app_time="20261111000000", appType=2, guid=docs.guid("p3"), amountPaid="2.00")
    (decl,) = run(
        [("order", docs.order()), ("payment", bad), ("payment", fixed), ("payment", stale), ("waybill", docs.waybill())]
    )
    assert decl.reasons == () and decl.documents["payment"] == fixed["guid"]


def test_withdraw_removes_the_document() -> None:
    withdraw = docs.waybill(app_time="20261111000100", appType=3, guid=docs.guid("w-del"))
    resend = docs.waybill(app_time="20261111000400", guid=docs.guid("w-new"))
    (decl,) = run(
        [
            ("order", docs.order()),
            ("waybill", docs.waybill(app_time="20261111000030")),
            ("waybill", withdraw),
            ("payment", docs.payment()),
            ("waybill", resend),
        ]
    )
    assert decl.reasons == () and decl.documents["waybill"] == resend["guid"]
    (missing,) = run(
        [
            ("order", docs.order()),
            ("waybill", docs.waybill(app_time="20261111000030")),
            ("waybill", withdraw),
            ("payment", docs.payment()),
        ]
    )
    assert missing.reasons == ("MISSING_WAYBILL",)


def test_first_document_older_than_its_own_window_closes_at_once() -> None:
    engine = Engine(CONFIG, MemoryStore(), MemoryStore())
    out = Outputs()
    engine.advance(parse_order(docs.raw(docs.order(app_time="20261113000000"))).app_time_ms, 1, out)
    result = engine.feed("order", docs.raw(docs.order()), Origin("o", 0, 0), 1)
    assert [d.reasons for d in result.declarations] == [("MISSING_PAYMENT", "MISSING_WAYBILL")]


def test_decided_state_is_forgotten_after_retention() -> None:
    engine = Engine(CONFIG, MemoryStore(), MemoryStore())
    for i, (kind, doc) in enumerate(TRIO):
        engine.feed(kind, docs.raw(doc), Origin(kind, 0, i), 1)  # type: ignore[arg-type]
    assert len(engine.join_store) == 1
    engine.advance(engine.timeline.event_ms + 7 * 24 * HOUR_MS + 1000, 1, Outputs())
    assert len(engine.join_store) == 0


def test_state_round_trips_through_the_codec() -> None:
    state = None
    for kind, doc in TRIO[:2]:
        parsed = {"order": parse_order}.get(kind)
        if parsed:
            result = step(state, parsed(docs.raw(doc)), CONFIG, 0, 1)
            state = result.state
    assert state is not None
    assert decode_state(encode_state(state)) == state


def test_complete_emits_a_candidate_for_the_quota_stage() -> None:
    from pipeline.parsing import parse_payment, parse_waybill

    o = parse_order(docs.raw(TRIO[0][1]))
    p = parse_payment(docs.raw(TRIO[1][1]))
    w = parse_waybill(docs.raw(TRIO[2][1]))
    s1 = step(None, o, CONFIG, o.app_time_ms, 1).state
    s2 = step(s1, p, CONFIG, p.app_time_ms, 1).state
    result = step(s2, w, CONFIG, w.app_time_ms, 1)
    (candidate,) = result.emit
    assert isinstance(candidate, Candidate) and candidate.year == 2026
    assert result.state is not None and not result.state.is_open and result.state.order is None


def test_received_at_is_the_receipt_of_the_completing_document() -> None:
    from pipeline.engine import Outcome, PartitionLoop, StoreStates
    from pipeline.parsing import parse_payment, parse_waybill
    from pipeline.timeline import Timeline

    o = parse_order(docs.raw(TRIO[0][1]))
    p = parse_payment(docs.raw(TRIO[1][1]))
    w = parse_waybill(docs.raw(TRIO[2][1]))
    loop = PartitionLoop(CONFIG, StoreStates(MemoryStore()), Timeline())
    out = Outcome()
    for doc, received in ((o, 1_000), (w, 3_000), (p, 2_000)):  # the payment completes the set
        loop.apply(doc, 9_000, out, received_ms=received)
    (candidate,) = out.emits
    assert isinstance(candidate, Candidate) and candidate.declaration.received_at_ms == 2_000
    # no receipt time given (the embedded runner): none on the declaration
    assert all(d.received_at_ms is None for d in run(TRIO))
    # a window closing incomplete has no completing document, so no receipt time
    late = step(None, o, CONFIG, o.app_time_ms + 2 * CONFIG.window_ms, 1, received_ms=5)
    (missing,) = late.emit
    assert isinstance(missing, Declaration) and missing.received_at_ms is None
