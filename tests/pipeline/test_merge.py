"""pipeline.merge: which queued head goes next, dead letters, when an empty queue may be passed over."""

from __future__ import annotations

import random

import pytest

from pipeline.merge import KINDS, RANK, Merge, Queued, merge_key
from pipeline.parsing import parse_order, parse_payment, parse_waybill
from pipeline.records import DocKind, Document
from tests.fixtures import docs

BASE: dict[DocKind, Document] = {
    "order": parse_order(docs.raw(docs.order())),
    "payment": parse_payment(docs.raw(docs.payment())),
    "waybill": parse_waybill(docs.raw(docs.waybill())),
}

# An arrival: (kind, appTime ms), or (kind, None) for a dead-lettered message.
Arrival = tuple[DocKind, int | None]
# What came out: (kind, offset).
Out = tuple[DocKind, int]


def doc(kind: DocKind, app_time_ms: int) -> Document:
    return BASE[kind]._replace(app_time_ms=app_time_ms)


def queued(kind: DocKind, app_time_ms: int | None, offset: int, received_ms: int = 0) -> Queued[Out]:
    item = None if app_time_ms is None else doc(kind, app_time_ms)
    return Queued(item, offset, received_ms, (kind, offset))


def fill(arrivals: list[Arrival], silent_ms: int = 100, now_ms: int = 0) -> Merge[Out]:
    merge: Merge[Out] = Merge(silent_ms, now_ms)
    offsets = dict.fromkeys(KINDS, 0)
    for kind, app_time in arrivals:
        merge.push(RANK[kind], queued(kind, app_time, offsets[kind]))
        offsets[kind] += 1
    return merge


def test_ranks_follow_the_embedded_runner_kind_order() -> None:
    assert RANK == {"order": 0, "payment": 1, "waybill": 2}
    assert tuple(sorted(RANK, key=RANK.__getitem__)) == KINDS


@pytest.mark.parametrize(
    ("kind", "app_time", "offset", "rank", "key"),
    [
        ("order", 5, 0, 0, (5, 0, 0)),
        ("payment", 5, 7, 1, (5, 1, 7)),
        ("waybill", 0, 3, 2, (0, 2, 3)),
        ("order", None, 9, 0, (-1, 0, 9)),  # a dead letter sorts first
        ("waybill", None, 2, 2, (-1, 2, 2)),
    ],
)
def test_merge_key(kind: DocKind, app_time: int | None, offset: int, rank: int, key: tuple[int, int, int]) -> None:
    assert merge_key(queued(kind, app_time, offset), rank) == key


@pytest.mark.parametrize(
    ("arrivals", "head"),
    [
        ([], None),
        ([("order", 5)], ("order", 0)),
        ([("waybill", 5)], ("waybill", 0)),
        # the same appTime across kinds: order, then payment, then waybill
        ([("waybill", 5), ("payment", 5), ("order", 5)], ("order", 0)),
        ([("waybill", 5), ("payment", 5)], ("payment", 0)),
        ([("waybill", 5), ("order", 6), ("payment", 6)], ("waybill", 0)),
        # the smallest appTime wins whatever the kind
        ([("order", 9), ("payment", 8), ("waybill", 7)], ("waybill", 0)),
        ([("order", 9), ("payment", 2), ("waybill", 7)], ("payment", 0)),
        # within one topic the head is the first received (offset order), never a later one
        ([("order", 9), ("order", 1), ("payment", 5)], ("payment", 0)),
        ([("payment", 3), ("payment", 3), ("order", 4)], ("payment", 0)),
    ],
)
def test_head(arrivals: list[Arrival], head: Out | None) -> None:
    merge = fill(arrivals)
    found = merge.head()
    if head is None:
        assert found is None
        return
    assert found is not None
    rank, item = found
    assert (KINDS[rank], item.offset) == head and item.handle == head
    assert len(merge) == len(arrivals)  # head only looks


def test_same_kind_same_app_time_goes_by_offset() -> None:
    merge = fill([("payment", 5), ("payment", 5), ("payment", 5)])
    taken = []
    while (found := merge.head()) is not None:
        taken.append(merge.pop(found[0]).offset)
    assert taken == [0, 1, 2]


def test_a_topic_is_never_reordered_by_app_time() -> None:
    merge = fill([("order", 9), ("order", 1)])
    found = merge.head()
    assert found is not None and found[1].offset == 0


@pytest.mark.parametrize(
    ("arrivals", "first_done", "left"),
    [
        ([], [], 0),
        ([("order", None)], [("order", 0)], 0),
        ([("order", None), ("order", None), ("order", 3)], [("order", 0), ("order", 1)], 1),
        # behind a document a dead letter waits for its turn (acks in offset order)
        ([("order", 3), ("order", None)], [], 2),
        (
            [("waybill", None), ("payment", None), ("order", None), ("payment", None), ("waybill", 1)],
            [("order", 0), ("payment", 0), ("payment", 1), ("waybill", 0)],
            1,
        ),
    ],
)
def test_done_pops_the_dead_letters_at_the_heads_in_order(
    arrivals: list[Arrival], first_done: list[Out], left: int
) -> None:
    merge = fill(arrivals)
    done = merge.done()
    assert [item.handle for item in done] == first_done
    assert all(item.doc is None for item in done)
    assert len(merge) == left
    assert merge.done() == []


def test_a_dead_letter_behind_a_document_is_done_once_the_document_is_popped() -> None:
    merge = fill([("order", 3), ("order", None), ("order", None), ("order", 4)])
    assert merge.done() == []
    merge.pop(RANK["order"])
    assert [item.handle for item in merge.done()] == [("order", 1), ("order", 2)]
    found = merge.head()
    assert found is not None and found[1].handle == ("order", 3)


# passing(now): silent_ms 100, the merge built at now 1000. Steps: ("push", kind, received_ms),
# ("pop", kind, 0); then passing(now) is asked.
Step = tuple[str, DocKind, int]


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        # every queue holds something: nothing is passed over, silent or not
        ([("push", "order", 1000), ("push", "payment", 1000), ("push", "waybill", 1000)], 1000, []),
        ([("push", "order", 1000), ("push", "payment", 1000), ("push", "waybill", 1000)], 99_999, []),
        # silent since construction: the constructor's now counts as last seen
        ([], 1000, None),
        ([], 1099, None),
        ([], 1100, [0, 1, 2]),
        ([("push", "order", 1000)], 1099, None),
        ([("push", "order", 1000)], 1100, [1, 2]),
        ([("push", "waybill", 5000)], 1100, [0, 1]),  # the non-empty queue's own silence does not matter
        # an empty queue that delivered recently blocks; once silent for silent_ms it is passed
        ([("push", "order", 1000), ("push", "payment", 1200), ("pop", "payment", 0)], 1250, None),
        ([("push", "order", 1000), ("push", "payment", 1200), ("pop", "payment", 0)], 1299, None),
        ([("push", "order", 1000), ("push", "payment", 1200), ("pop", "payment", 0)], 1300, [1, 2]),
        ([("push", "order", 1000), ("push", "payment", 1200), ("pop", "payment", 0)], 5000, [1, 2]),
        # one silent empty queue and one recent: None
        ([("push", "order", 1000), ("push", "waybill", 1190), ("pop", "waybill", 0)], 1150, None),
        ([("push", "order", 1000), ("push", "waybill", 1190), ("pop", "waybill", 0)], 1290, [1, 2]),
        # push keeps the latest receive time: an older received_ms does not move it back
        (
            [
                ("push", "order", 2000),
                ("push", "payment", 1900),
                ("push", "payment", 1000),
                ("pop", "payment", 0),
                ("pop", "payment", 0),
            ],
            1999,
            None,
        ),
        (
            [
                ("push", "order", 2000),
                ("push", "payment", 1900),
                ("push", "payment", 1000),
                ("pop", "payment", 0),
                ("pop", "payment", 0),
            ],
            2000,
            [1, 2],
        ),
    ],
)
def test_passing(steps: list[Step], now: int, expected: list[int] | None) -> None:
    merge: Merge[Out] = Merge(100, 1000)
    for i, (action, kind, received_ms) in enumerate(steps):
        if action == "push":
            merge.push(RANK[kind], queued(kind, 5, i, received_ms))
        else:
            merge.pop(RANK[kind])
    assert merge.passing(now) == expected


@pytest.mark.parametrize(
    ("sent_ms", "now", "expected", "ready"),
    [
        (1450, 1549, None, 1550),  # the empty queues are silent (since 1000), the head only 99 ms old
        (1450, 1550, [1, 2], 1550),
        (-1, 1599, None, 1600),  # no producer's timestamp: the head's age counts from its receipt (1500)
        (-1, 1600, [1, 2], 1600),
        (100, 1500, [1, 2], 1100),  # an old head: the empty queues' silence decides
    ],
)
def test_passing_waits_until_the_head_is_the_wait_old_by_its_producer_s_timestamp(
    sent_ms: int, now: int, expected: list[int] | None, ready: int
) -> None:
    merge: Merge[Out] = Merge(100, 1000)
    head: Queued[Out] = Queued(doc("order", 5), 0, 1500, ("order", 0), sent_ms)
    merge.push(0, head)
    assert merge.passing(now, head) == expected
    assert merge.ready_ms(head) == ready
    assert merge.passing(now) == [1, 2], "without a head only the silence counts"


@pytest.mark.parametrize(
    ("covered", "now", "expected", "ready"),
    [
        ((1, 2), 1500, [], -(2**62)),  # every empty queue covered: at once, nothing to ask
        ((2,), 1549, None, 1550),  # the payments topic still counts: its silence and the head's age
        ((2,), 1550, [1], 1550),  # and only it is asked about at the broker
        ((), 1598, None, 1599),  # neither ended: the waybills' topic is not silent yet
        ((), 1599, [1, 2], 1599),
    ],
)
def test_an_empty_queue_covered_by_its_producer_s_ticks_is_not_waited_for(
    covered: tuple[int, ...], now: int, expected: list[int] | None, ready: int
) -> None:
    merge: Merge[Out] = Merge(100, 1000)
    head: Queued[Out] = Queued(doc("order", 5), 0, 1500, ("order", 0), 1450)
    merge.push(0, head)
    merge.last_seen_ms[2] = 1499  # the waybills' topic delivered something just now
    assert merge.passing(now, head, covered) == expected
    assert merge.ready_ms(head, covered) == ready


def test_a_head_s_age_does_not_hold_it_when_every_queue_holds_a_document() -> None:
    merge: Merge[Out] = Merge(100, 1000)
    items = [Queued(doc(kind, 5), 0, 1500, (kind, 0), 1500) for kind in KINDS]
    for rank, item in enumerate(items):
        merge.push(rank, item)
    assert merge.passing(1500, items[0]) == []


def test_passing_counts_a_queue_holding_only_a_dead_letter_as_not_empty() -> None:
    merge: Merge[Out] = Merge(100, 1000)
    merge.push(0, queued("order", 5, 0, 1000))
    merge.push(1, queued("payment", None, 0, 1000))
    assert merge.passing(1050) is None  # the waybill queue is empty and not silent
    assert merge.passing(1100) == [2]


@pytest.mark.parametrize(
    ("received", "last_seen"),
    [
        ([], [1000, 1000, 1000]),
        ([(0, 1500)], [1500, 1000, 1000]),
        ([(2, 900)], [1000, 1000, 1000]),  # received before construction: stays at the constructor's now
        ([(1, 1500), (1, 1200), (1, 1600)], [1000, 1600, 1000]),
    ],
)
def test_push_updates_last_seen(received: list[tuple[int, int]], last_seen: list[int]) -> None:
    merge: Merge[Out] = Merge(100, 1000)
    for offset, (rank, at) in enumerate(received):
        merge.push(rank, queued(KINDS[rank], 1, offset, at))
    assert merge.last_seen_ms == last_seen


def test_len_counts_every_queued_message_dead_letters_included() -> None:
    merge = fill([("order", 1), ("order", None), ("waybill", 2), ("payment", None)])
    assert len(merge) == 4
    merge.done()
    assert len(merge) == 3
    merge.pop(RANK["waybill"])
    assert len(merge) == 2
    assert len(Merge[Out](1, 0)) == 0


def release(arrivals: list[Arrival]) -> tuple[list[Out], list[Out]]:
    """Push in arrival order; apply heads only while every queue holds something; then drain.

    Returns (applied documents, acknowledged dead letters), each as (kind, offset).
    """
    merge: Merge[Out] = Merge(silent_ms=10**9, now_ms=0)  # no queue ever silent: only [] lets a head pass
    offsets = dict.fromkeys(KINDS, 0)
    applied: list[Out] = []
    dead: list[Out] = []

    def take(allowed: bool) -> None:
        while True:
            dead.extend(item.handle for item in merge.done())
            if not allowed and merge.passing(0) != []:
                return
            found = merge.head()
            if found is None:
                return
            item = merge.pop(found[0])
            assert item.doc is not None
            applied.append(item.handle)

    for kind, app_time in arrivals:
        merge.push(RANK[kind], queued(kind, app_time, offsets[kind]))
        offsets[kind] += 1
        take(allowed=False)
    take(allowed=True)
    assert len(merge) == 0
    return applied, dead


def reference(arrivals: list[Arrival]) -> tuple[list[Out], list[Out]]:
    """Sort the documents by (appTime, rank, offset); dead letters per topic in offset order."""
    offsets = dict.fromkeys(KINDS, 0)
    keyed: list[tuple[int, int, int, DocKind]] = []
    dead: list[Out] = []
    for kind, app_time in arrivals:
        if app_time is None:
            dead.append((kind, offsets[kind]))
        else:
            keyed.append((app_time, RANK[kind], offsets[kind], kind))
        offsets[kind] += 1
    return [(kind, offset) for _, _, offset, kind in sorted(keyed)], dead


def seeded(seed: int, n: int, dead_rate: float = 0.0) -> list[Arrival]:
    """n arrivals interleaved at random; appTime non-decreasing within each topic (as producers send)."""
    rnd = random.Random(seed)
    clock = dict.fromkeys(KINDS, 0)
    out: list[Arrival] = []
    for _ in range(n):
        kind = rnd.choice(KINDS)
        clock[kind] += rnd.choice((0, 0, 1, 2, 5, 30))
        out.append((kind, None if rnd.random() < dead_rate else clock[kind]))
    return out


SEQUENCES: list[list[Arrival]] = [
    [],
    [("order", 1)],
    [("order", 1), ("payment", 2), ("waybill", 3)],
    [("waybill", 3), ("payment", 2), ("order", 1)],
    [("waybill", 5), ("payment", 5), ("order", 5)],  # a tie across kinds: order, payment, waybill
    [("payment", 5), ("payment", 5), ("order", 5), ("waybill", 5), ("order", 5)],
    # one topic far ahead (a backlog): the others' earlier documents still go first
    [("order", 10), ("order", 20), ("order", 30), ("order", 40), ("payment", 1), ("waybill", 2), ("payment", 35)],
    [("waybill", 1), ("waybill", 2), ("waybill", 3), ("order", 3), ("payment", 3), ("payment", 4), ("order", 4)],
    # dead letters anywhere never block and never come out as documents
    [("order", None), ("payment", 1), ("waybill", 1), ("order", 1)],
    [("order", 2), ("order", None), ("payment", None), ("payment", 1), ("waybill", None), ("waybill", 0)],
    [("waybill", None), ("waybill", None), ("waybill", None)],
    seeded(1, 30),
    seeded(2, 60),
    seeded(3, 200),
    seeded(4, 80, dead_rate=0.2),
    seeded(5, 150, dead_rate=0.1),
]


def per_topic(items: list[Out]) -> dict[DocKind, list[int]]:
    return {kind: [offset for k, offset in items if k == kind] for kind in KINDS}


@pytest.mark.parametrize("arrivals", SEQUENCES)
def test_release_order_matches_the_reference_sort(arrivals: list[Arrival]) -> None:
    applied, dead = release(arrivals)
    expected_applied, expected_dead = reference(arrivals)
    assert applied == expected_applied
    assert per_topic(dead) == per_topic(expected_dead)  # every dead letter acked, in offset order per topic


def _queue_lengths(merge: Merge[Out], lengths: tuple[int, int, int]) -> None:
    for rank, count in enumerate(lengths):
        for offset in range(count):
            merge.push(rank, queued(KINDS[rank], 1_000 + offset, offset))


@pytest.mark.parametrize(
    ("lengths", "paused", "pause", "resume"),
    [
        ((0, 0, 0), set(), [], []),
        ((0, 9, 3), set(), [], []),  # under the bound of 10
        ((0, 10, 3), set(), [1], []),  # at the bound: paused
        ((0, 25, 12), set(), [1, 2], []),  # both over (messages fetched before a pause still arrive)
        ((0, 25, 12), {1, 2}, [], []),  # paused already: nothing again
        ((0, 6, 12), {1, 2}, [], []),  # above half the bound: stays paused
        ((0, 5, 12), {1, 2}, [], [1]),  # at half the bound: resumed
        ((0, 0, 0), {0, 1, 2}, [], [0, 1, 2]),  # empty queues never stay paused
        ((30, 30, 30), set(), [0, 1, 2], []),  # every queue full: the head is applied anyway
    ],
)
def test_flow_pauses_a_full_queue_and_resumes_it_at_half(
    lengths: tuple[int, int, int], paused: set[int], pause: list[int], resume: list[int]
) -> None:
    merge: Merge[Out] = Merge(100, 0)
    _queue_lengths(merge, lengths)
    merge.paused.update(paused)
    assert merge.flow(10) == (pause, resume)


@pytest.mark.parametrize("bound", [1, 2, 3, 1000])
def test_flow_never_pauses_the_queue_the_merge_waits_for(bound: int) -> None:
    """The merge waits only for an empty queue (`passing`); an empty queue is neither paused nor left
    paused, whatever the bound, so a pause cannot hold up the merge."""
    merge: Merge[Out] = Merge(100, 0)
    _queue_lengths(merge, (0, bound, bound))
    merge.paused.add(0)  # paused when it was full, drained since
    assert merge.passing(50) is None, "the orders topic is not silent yet: the merge waits for it"
    pause, resume = merge.flow(bound)
    assert 0 not in pause and 0 in resume
    assert pause == [1, 2]
