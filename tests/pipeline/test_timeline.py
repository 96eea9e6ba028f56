"""pipeline.timeline.Timeline: event time moves only forward; the deadline heap pops earliest first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import timeline as timeline_module
from pipeline.timeline import Timeline, entry

Entry = tuple[int, str]


def _pairs(due: list[tuple[int, str, bool]]) -> list[Entry]:
    """(deadline, order_no) of what a timeline popped: these tests schedule retention entries only."""
    assert not any(window for _, _, window in due)
    return [(deadline, order_no) for deadline, order_no, _ in due]


@pytest.mark.parametrize(
    ("start", "moves", "expected"),
    [
        (0, [], [0]),
        (0, [5], [0, 5]),
        (0, [5, 3], [0, 5, 5]),  # backwards: unchanged
        (10, [10], [10, 10]),  # equal: unchanged
        (10, [9, 11, 11, 2, 40], [10, 10, 11, 11, 11, 40]),
        (100, [-1, 0, 99], [100, 100, 100, 100]),
    ],
)
def test_advance_moves_event_time_only_forward(start: int, moves: list[int], expected: list[int]) -> None:
    timeline = Timeline(start)
    seen = [timeline.event_ms]
    for move in moves:
        returned = timeline.advance(move)
        assert returned == timeline.event_ms
        seen.append(returned)
    assert seen == expected


def test_default_event_time_is_zero() -> None:
    assert Timeline().event_ms == 0 and len(Timeline()) == 0


@pytest.mark.parametrize(
    ("scheduled", "event_ms", "popped", "left"),
    [
        ([], 100, [], 0),
        ([(10, "a")], 10, [], 1),  # strictly before: a deadline equal to event time stays
        ([(10, "a")], 11, [(10, "a")], 0),
        ([(30, "c"), (10, "a"), (20, "b")], 25, [(10, "a"), (20, "b")], 1),
        ([(30, "c"), (10, "a"), (20, "b")], 1000, [(10, "a"), (20, "b"), (30, "c")], 0),
        ([(30, "c"), (10, "a"), (20, "b")], 10, [], 3),
        ([(5, "z"), (5, "a"), (5, "m")], 6, [(5, "a"), (5, "m"), (5, "z")], 0),  # ties: by order number
        ([(5, "x"), (5, "x"), (4, "y")], 6, [(4, "y"), (5, "x"), (5, "x")], 0),  # duplicates are kept
        ([(-5, "n"), (0, "o")], 0, [(-5, "n")], 1),
    ],
)
def test_due_pops_entries_strictly_before_event_time_earliest_first(
    scheduled: list[Entry], event_ms: int, popped: list[Entry], left: int
) -> None:
    timeline = Timeline()
    for deadline, order_no in scheduled:
        timeline.schedule(deadline, order_no)
    assert len(timeline) == len(scheduled)
    assert _pairs(timeline.due(event_ms)) == popped
    assert len(timeline) == left
    assert _pairs(timeline.due(event_ms)) == []  # popped entries are gone


def test_due_does_not_move_event_time() -> None:
    timeline = Timeline(3)
    timeline.schedule(10, "a")
    assert _pairs(timeline.due(50)) == [(10, "a")]
    assert timeline.event_ms == 3


def test_due_in_steps_yields_every_entry_once_in_order() -> None:
    timeline = Timeline()
    deadlines = [17, 3, 9, 3, 25, 11, 1]
    for i, deadline in enumerate(deadlines):
        timeline.schedule(deadline, f"o{i}")
    collected: list[Entry] = []
    for event_ms in (0, 3, 4, 12, 12, 30):
        collected += _pairs(timeline.due(event_ms))
    assert collected == sorted((d, f"o{i}") for i, d in enumerate(deadlines))
    assert len(timeline) == 0


@pytest.mark.parametrize(
    "scheduled",
    [
        [],
        [(1, "a")],
        [(3, "c"), (1, "a"), (2, "b")],
        [(7, "b"), (7, "a"), (-1, "z"), (100, "q"), (7, "a")],
    ],
)
def test_drain_pops_every_entry_earliest_first(scheduled: list[Entry]) -> None:
    timeline = Timeline(50)
    for deadline, order_no in scheduled:
        timeline.schedule(deadline, order_no)
    assert _pairs(timeline.drain()) == sorted(scheduled)
    assert len(timeline) == 0 and _pairs(timeline.drain()) == []
    assert timeline.event_ms == 50


def test_schedule_after_a_pop_is_still_ordered() -> None:
    timeline = Timeline()
    timeline.schedule(20, "b")
    timeline.schedule(10, "a")
    assert _pairs(timeline.due(15)) == [(10, "a")]
    timeline.schedule(5, "early")  # before event time already passed: due at the next call
    timeline.schedule(30, "c")
    assert _pairs(timeline.due(25)) == [(5, "early"), (20, "b")]
    assert _pairs(timeline.drain()) == [(30, "c")]


@pytest.mark.parametrize(
    ("event_ms", "entries", "due_at", "popped"),
    [
        (0, [], 10, []),
        (7, [(9, "b"), (2, "a"), (5, "c")], 6, [(2, "a"), (5, "c")]),
        (7, [(9, "b"), (2, "a"), (5, "c")], 100, [(2, "a"), (5, "c"), (9, "b")]),
        (1, [(4, "d"), (3, "c"), (2, "b"), (1, "a")], 3, [(1, "a"), (2, "b")]),
    ],
)
def test_from_entries_in_any_order(event_ms: int, entries: list[Entry], due_at: int, popped: list[Entry]) -> None:
    timeline = Timeline.from_entries(event_ms, [entry(d, o) for d, o in entries])
    assert timeline.event_ms == event_ms
    assert len(timeline) == len(entries)
    assert _pairs(timeline.due(due_at)) == popped
    assert _pairs(timeline.drain()) == sorted(set(entries) - set(popped))


_DEADLINES = st.integers(min_value=-(2**62), max_value=2**62)
_ORDER_NOS = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)


@given(
    scheduled=st.lists(st.tuples(_DEADLINES, _ORDER_NOS), max_size=40),
    steps=st.lists(_DEADLINES, max_size=6),
)
def test_packed_entries_pop_in_the_order_of_the_pairs(scheduled: list[Entry], steps: list[int]) -> None:
    """Entries are bytes (deadline, then UTF-8 order number): they must pop exactly as the
    (deadline, order_no) tuples would, non-ASCII order numbers and negative deadlines included."""
    timeline = Timeline()
    for deadline, order_no in scheduled:
        timeline.schedule(deadline, order_no)
    reference = sorted(scheduled)
    popped: list[Entry] = []
    for event_ms in sorted(steps):
        due = _pairs(timeline.due(event_ms))
        assert due == [pair for pair in reference[len(popped) :] if pair[0] < event_ms]
        popped += due
    assert popped + _pairs(timeline.drain()) == reference
    rebuilt = Timeline.from_entries(0, [entry(d, o) for d, o in scheduled])
    assert _pairs(rebuilt.drain()) == reference


def test_due_past_every_deadline_pops_everything() -> None:
    timeline = Timeline()
    timeline.schedule(2**63 - 1, "last")
    timeline.schedule(-(2**63), "first")
    assert _pairs(timeline.due(2**63)) == [(-(2**63), "first"), (2**63 - 1, "last")]
    assert len(timeline) == 0


def test_many_entries_in_order_and_out_of_order_pop_as_the_pairs() -> None:
    """Retention deadlines come in order (the packed run, over several 64 KiB chunks), window
    deadlines between them (the heap): popped in steps, they come out as the sorted pairs."""
    timeline = Timeline()
    scheduled: list[Entry] = []
    for i in range(12_000):
        scheduled.append((1_000_000 + i * 10, f"R{i:019d}"))  # in order
        scheduled.append((i * 83 % 9_973, f"W{i:019d}"))  # windows: any order
        timeline.schedule(*scheduled[-2])
        timeline.schedule(*scheduled[-1])
    assert len(timeline) == len(scheduled)
    reference = sorted(scheduled)
    popped: list[Entry] = []
    for event_ms in (-5, 0, 4_000, 9_973, 1_000_000, 1_050_007, 1_050_007, 1_100_000):
        assert timeline.has_due() == (bool(reference[len(popped) :]) and reference[len(popped)][0] < timeline.event_ms)
        popped += _pairs(timeline.due(event_ms))
        assert popped == [pair for pair in reference if pair[0] < event_ms]
        timeline.advance(event_ms)
    timeline.schedule(5, "late")  # below the run's last entry: the heap
    assert timeline.has_due()
    assert _pairs(timeline.due(6)) == [(5, "late")]
    assert popped + _pairs(timeline.drain()) == reference
    assert len(timeline) == 0 and not timeline.has_due()


def test_due_with_a_limit_pops_the_earliest_first_in_batches() -> None:
    timeline = Timeline()
    for deadline in (9, 3, 7, 1, 5, 11):
        timeline.schedule(deadline, f"o{deadline}")
    assert _pairs(timeline.due(10, 2)) == [(1, "o1"), (3, "o3")]
    assert _pairs(timeline.due(10, 2)) == [(5, "o5"), (7, "o7")]
    assert _pairs(timeline.due(10, 2)) == [(9, "o9")]
    assert _pairs(timeline.due(10, 2)) == []
    assert _pairs(timeline.due(2**63, 5)) == [(11, "o11")]
    assert len(timeline) == 0


class _Recording:
    """A spill that counts what passes through it (and checks it is first in, first out)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.taken = 0
        self.put_count = 0

    def put(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.put_count += 1

    def take(self) -> bytes:
        self.taken += 1
        return self.chunks.pop(0)

    def __len__(self) -> int:
        return len(self.chunks)


@given(
    scheduled=st.lists(st.tuples(st.integers(min_value=0, max_value=60), _ORDER_NOS), max_size=60),
    steps=st.lists(st.integers(min_value=0, max_value=70), max_size=8),
)
def test_a_spilled_run_pops_as_the_pairs(scheduled: list[Entry], steps: list[int]) -> None:
    """With tiny chunks every few entries cross a chunk boundary: head, spilled middle, tail."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timeline_module, "_CHUNK", 24)
        spill = _Recording()
        timeline = Timeline(spill=spill)
        pending: list[Entry] = []  # the reference: what is indexed and not popped yet
        moments = sorted(steps)
        for i, (deadline, order_no) in enumerate(scheduled):
            timeline.schedule(deadline, order_no)
            pending.append((deadline, order_no))
            if moments and i % 7 == 6:  # pops between the schedules
                event_ms = moments.pop(0)
                pending.sort()
                expected = [pair for pair in pending if pair[0] < event_ms]
                assert _pairs(timeline.due(event_ms)) == expected
                del pending[: len(expected)]
        assert _pairs(timeline.drain()) == sorted(pending)
        assert len(spill) == 0 and spill.taken == spill.put_count


def test_only_the_front_and_back_chunks_of_the_run_stay_in_memory() -> None:
    """Retention deadlines in order (120,000 entries, ~3.6 MB packed): the full chunks between
    the front and the back go to the spill and come back in order as they are popped."""
    spill = _Recording()
    timeline = Timeline(spill=spill)
    for i in range(120_000):
        timeline.schedule(1_000 + i, f"HZ2026111100{i:09d}")
    assert spill.put_count >= 50
    held = timeline._run.head, timeline._run.tail  # noqa: SLF001 - what stays in memory
    assert sum(len(chunk or b"") for chunk in held) <= 2 * 65_536 + 64
    assert _pairs(timeline.due(1_000 + 60_000)) == [(1_000 + i, f"HZ2026111100{i:09d}") for i in range(60_000)]
    assert spill.taken > 0
    assert _pairs(timeline.drain()) == [(1_000 + i, f"HZ2026111100{i:09d}") for i in range(60_000, 120_000)]
    assert len(spill) == 0 and spill.taken == spill.put_count


@given(
    scheduled=st.lists(st.tuples(_DEADLINES, _ORDER_NOS, st.booleans()), max_size=40),
    steps=st.lists(_DEADLINES, max_size=6),
)
def test_an_entry_keeps_its_kind_and_pops_in_deadline_kind_order_number_order(
    scheduled: list[tuple[int, str, bool]], steps: list[int]
) -> None:
    """A window's entry and a retention's come back as scheduled (the loop skips a window's stale
    entry by its kind): at one deadline windows first, then by order number, scheduled or rebuilt."""
    timeline = Timeline()
    for deadline, order_no, window in scheduled:
        timeline.schedule(deadline, order_no, window)
    reference = sorted(scheduled, key=lambda e: (e[0], not e[2], e[1]))
    popped: list[tuple[int, str, bool]] = []
    for event_ms in sorted(steps):
        popped += timeline.due(event_ms)
    assert popped + timeline.drain() == reference
    rebuilt = Timeline.from_entries(0, [entry(d, o, w) for d, o, w in scheduled])
    assert rebuilt.drain() == reference
