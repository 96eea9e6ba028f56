"""pipeline.engine: PartitionLoop over a dict-backed fake States, StoreStates' cache, Outcome counters."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from pipeline.codec import decode_state, encode_state
from pipeline.engine import Engine, Origin, Outcome, PartitionLoop, StoreStates
from pipeline.join import Candidate, Emit, JoinState, Step
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.records import DocKind, Document, OrderId
from pipeline.store import MemoryStore, Store
from pipeline.timeconv import CST
from pipeline.timeline import Timeline
from tests.fixtures import docs
from tests.pipeline.helpers import CONFIG

WINDOW, RETENTION = 1000, 5000
CFG = replace(CONFIG, window_ms=WINDOW, retention_ms=RETENTION)

ORDER = parse_order(docs.raw(docs.order()))
PAYMENT = parse_payment(docs.raw(docs.payment()))
WAYBILL = parse_waybill(docs.raw(docs.waybill()))
BASE: dict[DocKind, Document] = {"order": ORDER, "payment": PAYMENT, "waybill": WAYBILL}


def doc(kind: DocKind, order_no: str, t: int, guid: str | None = None) -> Document:
    return BASE[kind]._replace(order_no=OrderId(order_no), app_time_ms=t, guid=guid or f"{kind}-{order_no}-{t}")


@dataclass(frozen=True)
class Saved:
    order_no: str
    before: JoinState | None
    after: JoinState | None
    emits: int  # len(result.emit)
    already_out: int  # len(outcome.emits) when save was called


class FakeStates:
    """States over a dict; records every load and save (and what the outcome held at each save)."""

    def __init__(self, outcome: Outcome | None = None) -> None:
        self.data: dict[str, JoinState] = {}
        self.loads: list[str] = []
        self.saves: list[Saved] = []
        self.outcome = outcome

    def load(self, order_no: str) -> JoinState | None:
        self.loads.append(order_no)
        return self.data.get(order_no)

    def save(self, order_no: str, before: JoinState | None, result: Step) -> None:
        already = len(self.outcome.emits) if self.outcome is not None else -1
        self.saves.append(Saved(order_no, before, result.state, len(result.emit), already))
        if result.state is None:
            self.data.pop(order_no, None)
        else:
            self.data[order_no] = result.state


# Actions: ("doc", kind, order_no, t) or ("doc", kind, order_no, t, guid); ("advance", t); ("close",).
Action = tuple[Any, ...]


@dataclass
class Run:
    loop: PartitionLoop
    states: FakeStates
    out: Outcome
    open_after: list[int]


def drive(actions: list[Action], wall_ms: int = 7) -> Run:
    out = Outcome()
    states = FakeStates(out)
    loop = PartitionLoop(CFG, states, Timeline())
    open_after = []
    for action in actions:
        if action[0] == "doc":
            loop.apply(doc(*action[1:]), wall_ms, out)
        elif action[0] == "advance":
            loop.advance(action[1], wall_ms, out)
        else:
            assert action == ("close",)
            loop.close_all(wall_ms, out)
        open_after.append(loop.open_windows)
    return Run(loop, states, out, open_after)


def label(item: Emit) -> tuple[str, str]:
    """(order_no, what): "candidate", or the status and reasons of a declaration."""
    if isinstance(item, Candidate):
        return item.declaration.order_no, "candidate"
    return item.order_no, f"{item.status} {' '.join(item.reasons)}"


def counters(out: Outcome) -> tuple[int, int, int, int]:
    return (out.completed, out.incomplete, out.redelivered, out.after_decision)


REJ_PW = "REJECTED MISSING_PAYMENT MISSING_WAYBILL"
REJ_OW = "REJECTED MISSING_ORDER MISSING_WAYBILL"
REJ_W = "REJECTED MISSING_WAYBILL"
REVIEW = "REVIEW DOCUMENT_AFTER_DECISION"


def opened(*pairs: tuple[str, int]) -> list[Action]:
    return [("doc", "payment", order_no, t) for order_no, t in pairs]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        # deadlines A 1000, B 1300, C 1100: expired in deadline order, then the mover opens D
        ([*opened(("A", 0), ("B", 300), ("C", 100)), ("doc", "payment", "D", 2000)], ["A", "C", "B"]),
        ([*opened(("C", 100), ("B", 300), ("A", 0)), ("doc", "payment", "D", 2000)], ["A", "C", "B"]),
        ([*opened(("B", 300), ("A", 0), ("C", 100)), ("advance", 2000)], ["A", "C", "B"]),
        # strictly before: a deadline equal to the new event time stays open
        ([*opened(("A", 0), ("B", 300), ("C", 100)), ("doc", "payment", "D", 1100)], ["A"]),
        ([*opened(("A", 0), ("B", 300), ("C", 100)), ("doc", "payment", "D", 1101)], ["A", "C"]),
        ([*opened(("A", 0), ("B", 300), ("C", 100)), ("doc", "payment", "D", 1000)], []),
        # the same deadline: by order number
        ([*opened(("B", 0), ("A", 0)), ("advance", 1001)], ["A", "B"]),
        # event time never moves back: an older document expires nothing
        ([*opened(("A", 0), ("B", 900)), ("advance", 1500), ("doc", "payment", "B", 100, "p-old")], ["A"]),
        # in steps
        ([*opened(("A", 0), ("B", 300), ("C", 100)), ("advance", 1050), ("advance", 1400)], ["A", "C", "B"]),
    ],
)
def test_windows_expire_in_deadline_order_when_event_time_passes_them(
    actions: list[Action], expected: list[str]
) -> None:
    run = drive(actions)
    assert [label(e) for e in run.out.emits] == [(o, REJ_OW) for o in expected]
    # the expiries are saved first, then (if the mover is a document) the document itself
    saves = [s.order_no for s in run.states.saves]
    openers = [a[2] for a in actions if a[0] == "doc"]
    if actions[-1][0] == "doc" and actions[-1][2] not in expected:
        assert saves == [*openers[:-1], *expected, openers[-1]]
    else:
        assert saves[len(openers) :] == expected


@pytest.mark.parametrize(
    ("actions", "emits"),
    [
        # a payment of A, then its waybill a day later: A closes first, the waybill then comes after the decision
        (
            [("doc", "payment", "A", 0), ("doc", "waybill", "A", 1500)],
            [("A", REJ_OW), ("A", REVIEW)],
        ),
        # the document that would have completed A arrives after its window: it does not complete it
        (
            [("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "waybill", "A", 1001)],
            [("A", REJ_W), ("A", REVIEW)],
        ),
        # at the deadline exactly it still completes
        (
            [("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "waybill", "A", 1000)],
            [("A", "candidate")],
        ),
        # another order's document moves time: A closes before B's document is applied
        (
            [("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "order", "B", 1001)],
            [("A", REJ_W)],
        ),
    ],
)
def test_expiry_happens_before_the_document_that_moved_time_is_applied(
    actions: list[Action], emits: list[tuple[str, str]]
) -> None:
    run = drive(actions)
    assert [label(e) for e in run.out.emits] == emits


def test_stale_index_entries_are_skipped() -> None:
    # A completes at 20: its window entry (1000, A) is stale, the state now waits for (20 + retention, A).
    run = drive([("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "waybill", "A", 20)])
    decided = run.states.data["A"]
    assert not decided.is_open and decided.deadline_ms == 20 + RETENTION
    assert sorted(run.loop.timeline.drain()) == [(1000, "A", True), (20 + RETENTION, "A", False)]
    for entry in [(1000, "A", True), (20 + RETENTION, "A", False)]:
        run.loop.timeline.schedule(*entry)
    saves, loads = len(run.states.saves), len(run.states.loads)
    run.loop.advance(2000, 7, run.out)  # pops (1000, A): stale, nothing happens
    assert len(run.states.saves) == saves and run.states.data["A"] is decided
    assert len(run.states.loads) == loads, "a decided order's window entry is skipped without reading its state"
    assert len(run.out.emits) == 1 and len(run.loop.timeline) == 1 and run.loop.open_windows == 0
    run.loop.advance(20 + RETENTION + 1, 7, run.out)  # the decided order is forgotten: deleted, no emit
    assert run.states.saves[-1] == Saved("A", decided, None, 0, 1)
    assert "A" not in run.states.data and len(run.out.emits) == 1
    assert counters(run.out) == (1, 0, 0, 0)


def test_an_entry_for_a_state_gone_from_the_store_is_skipped() -> None:
    run = drive([("doc", "payment", "A", 0)])
    del run.states.data["A"]
    saves = len(run.states.saves)
    run.loop.advance(5000, 7, run.out)
    assert len(run.states.saves) == saves and run.out.emits == [] and run.out.incomplete == 0


def test_an_entry_for_a_state_with_another_deadline_is_skipped() -> None:
    run = drive([("doc", "payment", "A", 0)])
    run.states.data["A"] = run.states.data["A"]._replace(deadline_ms=9000)  # moved on, not re-indexed
    run.loop.advance(5000, 7, run.out)
    assert run.out.emits == [] and run.states.data["A"].is_open


SEQUENCES: list[list[Action]] = [
    [("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "waybill", "A", 20)],
    [
        ("doc", "payment", "A", 0),
        ("doc", "payment", "B", 5),
        ("doc", "order", "A", 6),
        ("advance", 1003),
        ("doc", "waybill", "A", 1500),
        ("doc", "order", "C", 1500),
        ("close",),
    ],
    [("doc", "order", "A", 0), ("doc", "order", "B", 3000), ("doc", "waybill", "A", 3001), ("advance", 99_999)],
]


@pytest.mark.parametrize("actions", SEQUENCES)
def test_save_is_called_before_the_emits_appear_in_the_outcome(actions: list[Action]) -> None:
    run = drive(actions)
    emitted = 0
    for saved in run.states.saves:
        assert saved.already_out == emitted  # nothing of this change has been emitted yet
        emitted += saved.emits
    assert emitted == len(run.out.emits) > 0


def test_a_state_is_saved_for_every_emit_with_the_emitting_state() -> None:
    run = drive(SEQUENCES[1])
    emitting = [s for s in run.states.saves if s.emits]
    assert [s.order_no for s in emitting] == [label(e)[0] for e in run.out.emits]
    assert all(s.after is not None and not s.after.is_open for s in emitting)


@pytest.mark.parametrize(
    ("actions", "open_after"),
    [
        (
            [
                ("doc", "payment", "A", 0),
                ("doc", "payment", "B", 100),
                ("doc", "order", "A", 200),
                ("doc", "waybill", "A", 300),  # A complete
                ("doc", "waybill", "A", 300),  # redelivered
                ("advance", 1200),  # B expires
                ("doc", "waybill", "A", 1300, "w-new"),  # after the decision
                ("advance", 10_000),  # A and B forgotten
                ("doc", "order", "C", 10_000),
                ("doc", "order", "D", 10_001),
                ("close",),
            ],
            [1, 2, 2, 1, 1, 0, 0, 0, 1, 2, 0],
        ),
        # a first document whose window already passed never counts as open
        ([("advance", 5000), ("doc", "order", "A", 0), ("doc", "order", "B", 4500)], [0, 0, 1]),
        # a withdrawal keeps the window open
        ([("doc", "order", "A", 0), ("doc", "payment", "A", 5), ("close",), ("close",)], [1, 1, 0, 0]),
    ],
)
def test_open_windows_counts_up_and_down(actions: list[Action], open_after: list[int]) -> None:
    run = drive(actions)
    assert run.open_after == open_after
    assert run.loop.open_windows == sum(1 for s in run.states.data.values() if s.is_open)


def test_open_windows_starts_from_the_restored_windows() -> None:
    restored = {f"R{i}" for i in range(5)}
    loop = PartitionLoop(CFG, FakeStates(), Timeline(), windows=restored)
    loop.apply(doc("order", "A", 0), 1, Outcome())
    assert loop.open_windows == 6 and "A" in loop.windows


def test_the_end_of_input_reads_only_the_open_windows() -> None:
    run = drive([*[("doc", kind, "A", t) for kind, t in (("order", 0), ("payment", 1), ("waybill", 2))]])
    run.loop.apply(doc("payment", "B", 3), 7, run.out)
    loads = len(run.states.loads)
    run.loop.close_all(9, run.out)
    assert run.states.loads[loads:] == ["B"], "A's window and retention entries are not read"
    assert run.out.incomplete == 1 and run.loop.open_windows == 0


TRIO: list[Action] = [("doc", "order", "A", 0), ("doc", "payment", "A", 10), ("doc", "waybill", "A", 20)]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ([], (0, 0, 0, 0)),
        (TRIO, (1, 0, 0, 0)),
        ([*TRIO, ("doc", "payment", "A", 10)], (1, 0, 1, 0)),  # redelivered after the decision
        ([*TRIO[:2], ("doc", "order", "A", 0), *TRIO[2:]], (1, 0, 1, 0)),  # redelivered while open
        ([*TRIO, ("doc", "waybill", "A", 30, "w2")], (1, 0, 0, 1)),
        ([*TRIO, ("doc", "waybill", "A", 30, "w2"), ("doc", "waybill", "A", 30, "w2")], (1, 0, 1, 1)),
        ([*TRIO, ("doc", "order", "A", 40, "o2"), ("doc", "payment", "A", 50, "p2")], (1, 0, 0, 2)),
        ([("doc", "payment", "A", 0), ("advance", 1001)], (0, 1, 0, 0)),  # window closed, a document missing
        ([("doc", "payment", "A", 0), ("close",)], (0, 1, 0, 0)),
        ([("doc", "payment", "A", 0), ("advance", 1001), ("close",)], (0, 1, 0, 0)),  # closed once
        ([("advance", 5000), ("doc", "order", "A", 0)], (0, 1, 0, 0)),  # a first document whose window passed
        ([("advance", 5000), ("doc", "order", "A", 0), ("doc", "order", "A", 0)], (0, 1, 1, 0)),
        ([("advance", 5000), ("doc", "order", "A", 0), ("doc", "waybill", "A", 1)], (0, 1, 0, 1)),
        ([*TRIO, ("advance", 99_999)], (1, 0, 0, 0)),  # forgetting a decided order counts nothing
        ([*TRIO, ("advance", 99_999), ("doc", "payment", "A", 99_999)], (1, 0, 0, 0)),  # forgotten: a new window
        # forgotten: the old guid is no longer recognised, and its window has passed
        ([*TRIO, ("advance", 99_999), ("doc", "payment", "A", 10)], (1, 1, 0, 0)),
        (
            [("doc", "payment", "A", 0), ("doc", "payment", "B", 0), ("doc", "order", "C", 0), ("close",)],
            (0, 3, 0, 0),
        ),
    ],
)
def test_outcome_counters(actions: list[Action], expected: tuple[int, int, int, int]) -> None:
    assert counters(drive(actions).out) == expected


def test_a_redelivery_is_not_saved() -> None:
    run = drive([("doc", "order", "A", 0), ("doc", "order", "A", 0)])
    assert [s.order_no for s in run.states.saves] == ["A"]


def test_close_all_closes_open_windows_only() -> None:
    run = drive([*TRIO, ("doc", "payment", "B", 30), ("doc", "order", "C", 40), ("doc", "waybill", "C", 50)])
    decided, before = run.states.data["A"], len(run.out.emits)
    run.loop.close_all(9, run.out)
    assert [label(e) for e in run.out.emits[before:]] == [("B", REJ_OW), ("C", "REJECTED MISSING_PAYMENT")]
    assert run.states.data["A"] is decided  # decided orders are kept, not forgotten
    assert not run.states.data["B"].is_open and not run.states.data["C"].is_open
    assert run.loop.open_windows == 0 and counters(run.out) == (1, 2, 0, 0)
    again = len(run.out.emits)
    run.loop.close_all(9, run.out)
    assert len(run.out.emits) == again


def test_close_all_on_nothing() -> None:
    run = drive([("close",)])
    assert run.out.emits == [] and run.states.saves == [] and run.states.loads == []


# StoreStates

STATE_A = JoinState(OrderId("A"), 1000, payment=PAYMENT, guids=("g1",))
STATE_A2 = STATE_A._replace(deadline_ms=6000, payment=None, guids=("g1", "g2"), decided="d")
STATE_B = JoinState(OrderId("B"), 2000, order=ORDER, guids=("g3",))
STATE_C = JoinState(OrderId("C"), 3000, waybill=WAYBILL, guids=("g4",))
STATE_D = JoinState(OrderId("D"), 4000)
NAMED = {"A": STATE_A, "A2": STATE_A2, "B": STATE_B, "C": STATE_C, "D": STATE_D}


def stored(store: MemoryStore) -> dict[str, JoinState]:
    return {k.decode(): decode_state(v) for k, v in store.items()}


def save(states: StoreStates, name: str) -> None:
    """Save a named state, or "-X": delete order X."""
    if name.startswith("-"):
        states.save(name[1:], None, Step(None))
    else:
        state = NAMED[name]
        states.save(state.order_no, None, Step(state))


@pytest.mark.parametrize(
    ("cache_size", "saves", "after"),
    [
        # cache_size 0: every save writes through
        (0, ["A", "B", "A2", "-B"], ["A", "A B", "A2 B", "A2"]),
        (0, ["-A", "D"], ["", "D"]),
        # a cache writes when it is full (then empties)
        (3, ["A", "B", "C", "D"], ["", "", "A B C", "A B C"]),
        (3, ["A", "A2", "B", "C"], ["", "", "", "A2 B C"]),  # the same order twice takes one slot
        (2, ["A", "-A", "B"], ["", "", "B"]),  # a deletion replaces the cached state: A is never written
        (1, ["A", "B", "-A"], ["A", "A B", "B"]),
        (2, ["A", "B", "C", "-A", "D"], ["", "A B", "A B", "B C", "B C"]),
    ],
)
def test_store_states_writes(cache_size: int, saves: list[str], after: list[str]) -> None:
    store = MemoryStore()
    states = StoreStates(store, cache_size)
    for name, expected in zip(saves, after, strict=True):
        save(states, name)
        assert stored(store) == {NAMED[n].order_no: NAMED[n] for n in expected.split()}


@pytest.mark.parametrize(
    ("cache_size", "saves", "stored_before", "stored_after"),
    [
        (0, ["A", "B"], {"A": STATE_A, "B": STATE_B}, {"A": STATE_A, "B": STATE_B}),
        (5, ["A", "B"], {}, {"A": STATE_A, "B": STATE_B}),
        (5, ["A", "B", "A2", "-B"], {}, {"A": STATE_A2}),
        (5, ["D", "-D"], {}, {}),
    ],
)
def test_store_states_flush(
    cache_size: int, saves: list[str], stored_before: dict[str, JoinState], stored_after: dict[str, JoinState]
) -> None:
    store = MemoryStore()
    states = StoreStates(store, cache_size)
    for name in saves:
        save(states, name)
    assert stored(store) == stored_before
    states.flush()
    assert stored(store) == stored_after
    states.flush()  # the cache emptied: a second flush changes nothing
    assert stored(store) == stored_after


@pytest.mark.parametrize("cache_size", [0, 1, 5])
def test_store_states_load_sees_its_own_writes(cache_size: int) -> None:
    store = MemoryStore()
    store.put(b"A", encode_state(STATE_A))
    store.put(b"B", encode_state(STATE_B))
    states = StoreStates(store, cache_size)
    assert states.load("A") == STATE_A and states.load("Z") is None
    save(states, "A2")
    save(states, "-B")
    assert states.load("A") == STATE_A2
    assert states.load("B") is None  # a cached deletion hides the stored state
    assert b"B" in dict(store.items()) if cache_size == 5 else b"B" not in dict(store.items())
    states.flush()
    assert states.load("A") == STATE_A2 and states.load("B") is None
    assert stored(store) == {"A": STATE_A2}


class FailingStore(MemoryStore):
    def get(self, key: bytes) -> bytes | None:
        raise RuntimeError("disk on fire")


def test_engine_turns_a_bug_into_an_internal_dead_letter() -> None:
    engine = Engine(CONFIG, FailingStore(), MemoryStore())
    raw = docs.raw(docs.order())
    out = engine.feed("order", raw, Origin("clearance.orders", 2, 9, b"k"), 5)
    assert out.declarations == [] and [type(e) for e in out.internal_errors] == [RuntimeError]
    (dead,) = out.dead_letters
    assert (dead["error"], dead["reason"], dead["field"]) == ("INTERNAL_ERROR", "internal error: RuntimeError", None)
    assert (dead["sourceTopic"], dead["sourcePartition"], dead["sourceOffset"], dead["key"]) == (
        "clearance.orders",
        2,
        9,
        "k",
    )


def test_engine_dead_letters_bad_input_and_keeps_going() -> None:
    engine = Engine(CONFIG, MemoryStore(), MemoryStore())
    out = engine.feed("payment", b"{not json", Origin("clearance.payments", 0, 3), 5)
    assert out.declarations == [] and out.internal_errors == []
    assert [(d["error"], d["sourceOffset"]) for d in out.dead_letters] == [("INVALID_RECORD", 3)]
    assert len(engine.join_store) == 0


# The same documents through Engine with and without the write-back caches.

OTHER_BUYER = docs.resident_id("11010519491231002")
START = datetime(2026, 11, 11, tzinfo=CST)


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y%m%d%H%M%S")


def trace(seed: int, orders: int = 24) -> list[tuple[DocKind, bytes]]:
    """Orders of two buyers: complete, missing, late, modified, withdrawn, redelivered; one bad message.

    Even seeds: roughly in appTime order (a few minutes of jitter); odd seeds: shuffled.
    """
    rnd = random.Random(seed)
    timed: list[tuple[float, DocKind, bytes]] = []
    for i in range(orders):
        no = f"TM20261111{i:05d}"
        t = i * 37.0
        buyer = {"buyerIdNumber": OTHER_BUYER} if i % 3 == 0 else {}
        payer = {"payerIdNumber": OTHER_BUYER} if i % 3 == 0 else {}
        msgs: list[tuple[float, DocKind, dict[str, Any]]] = [
            (t, "order", docs.order(no, at(t), **buyer)),
            (t + 1, "payment", docs.payment(no, at(t + 1), **payer)),
            (t + 3, "waybill", docs.waybill(no, at(t + 3))),
        ]
        shape = rnd.choice(["complete", "complete", "no-waybill", "late", "modified", "withdrawn", "redelivered"])
        if shape == "no-waybill":
            msgs = msgs[:2]
        elif shape == "late":  # after its window: the order closes incomplete, the waybill is after the decision
            msgs[2] = (t + 30 * 60, "waybill", docs.waybill(no, at(t + 30 * 60)))
        elif shape == "modified":
            msgs.append((t + 2, "payment", docs.payment(no, at(t + 2), appType=2, amountPaid="1.00", **payer)))
        elif shape == "withdrawn":
            msgs.append((t + 2, "waybill", docs.waybill(no, at(t + 2), appType=3, guid=docs.guid(f"del-{no}"))))
        elif shape == "redelivered":
            again = msgs[rnd.randrange(3)]
            msgs.append((again[0] + rnd.uniform(0, 60), again[1], again[2]))
        timed += [(at_min + rnd.uniform(0, 4), kind, docs.raw(d)) for at_min, kind, d in msgs]
    if seed % 2:
        rnd.shuffle(timed)  # far out of order: late documents, after-decision records
    else:
        timed.sort(key=lambda m: m[0])
    out: list[tuple[DocKind, bytes]] = [(kind, raw) for _, kind, raw in timed]
    out.insert(rnd.randrange(len(out)), ("order", b"{bad"))
    return out


def feed_all(
    messages: list[tuple[DocKind, bytes]], cache_size: int, *, empty: bool = False
) -> tuple[list[Any], Engine]:
    config = replace(CONFIG, annual_limit_fen=150_000)  # a few orders per buyer, then ANNUAL_QUOTA_EXCEEDED
    engine = Engine(config, MemoryStore(), MemoryStore(), cache_size=cache_size, empty=empty)
    seen: list[Any] = []
    for offset, (kind, raw) in enumerate(messages):
        out = engine.feed(kind, raw, Origin(kind, 0, offset), 1)
        seen += [*out.declarations, *out.dead_letters, *out.internal_errors]
    close = engine.close_all(1)
    seen += close.declarations
    engine.flush()
    return seen, engine


def items(store: Store) -> Iterator[tuple[bytes, bytes]]:
    return iter(sorted(store.items()))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("cache_size", [0, 1, 2, 3, 10, 100_000])
@pytest.mark.parametrize("empty", [False, True])  # True: keys never written are not read
def test_engine_cache_gives_identical_declarations(seed: int, cache_size: int, empty: bool) -> None:
    messages = trace(seed)
    through, plain = feed_all(messages, 0)
    cached, engine = feed_all(messages, cache_size, empty=empty)
    assert cached == through
    statuses = {d.status for d in through if not isinstance(d, dict)}
    assert {"REJECTED"} < statuses  # the trace is not trivial
    assert any(isinstance(d, dict) for d in through)  # the bad message
    assert list(items(engine.join_store)) == list(items(plain.join_store))
    assert list(items(engine.quota_store)) == list(items(plain.quota_store))


@pytest.mark.parametrize(
    ("seed", "reasons"),
    [
        (0, {"ANNUAL_QUOTA_EXCEEDED", "DOCUMENT_AFTER_DECISION", "MISSING_WAYBILL", "PAID_AMOUNT_MISMATCH"}),
        (1, {"DOCUMENT_AFTER_DECISION", "MISSING_ORDER", "MISSING_PAYMENT", "MISSING_WAYBILL"}),
    ],
)
def test_the_traces_are_not_trivial(seed: int, reasons: set[str]) -> None:
    seen, _ = feed_all(trace(seed), 0)
    assert reasons <= {r for d in seen if not isinstance(d, dict) for r in d.reasons}
    assert any(not isinstance(d, dict) and d.status == "RELEASED" for d in seen)


@pytest.mark.parametrize("limit", [1, 3, 1024, 5000])
def test_advance_with_a_limit_closes_the_same_windows_over_several_calls(limit: int) -> None:
    """A flush that passes thousands of deadlines (the Kafka shell's tick) may take them a
    `limit` at a time: the same saves and emits, in the same order, as one call."""
    actions: list[Action] = [("doc", "payment", f"P{i:05d}", i) for i in range(2500)]
    actions += [("doc", "order", f"O{i:05d}", i) for i in range(0, 2500, 7)]
    whole = drive([*actions, ("advance", 10 * RETENTION)])
    stepped = drive(actions)
    calls = 0
    while stepped.loop.advance(10 * RETENTION, 7, stepped.out, limit):
        calls += 1
    assert calls >= 2500 // limit - 1  # every window closes (the decided ones are retained past it)
    assert [label(e) for e in stepped.out.emits] == [label(e) for e in whole.out.emits]
    assert stepped.states.saves == whole.states.saves
    assert counters(stepped.out) == counters(whole.out)
    assert len(stepped.loop.timeline) == 0 and not stepped.loop.advance(10 * RETENTION, 7, stepped.out, limit)
