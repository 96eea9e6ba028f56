"""pipeline.feed applies a trace's documents exactly in heapq.merge's order over the files'
(appTime, rank, line) tuples, pulled at the same moments: the embedded runner's loop before it."""

from __future__ import annotations

import heapq
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearance.settings import Settings
from pipeline.engine import PARSERS, Engine, Origin, Outputs
from pipeline.feed import feed
from pipeline.records import DocKind, Document
from pipeline.store import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
KINDS: tuple[DocKind, ...] = ("order", "payment", "waybill")
FILES = {"order": "orders.jsonl", "payment": "payments.jsonl", "waybill": "waybills.jsonl"}


class Collected:
    """A Sink that keeps what the feed wrote, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []
        self.progress_calls = 0

    def write(self, out: Outputs) -> None:
        self.records += [(d.declaration_id, d.status) for d in out.declarations]
        self.records += [("dead letter", str(r["reason"])) for r in out.dead_letters]

    def progress(self, done_bytes: int) -> None:
        self.progress_calls += 1


def _reference(lines: dict[DocKind, list[bytes]], engine: Engine) -> tuple[list[tuple[str, str]], int]:
    """The runner's loop before pipeline.feed: a generator per file, heapq.merge, apply."""
    sink = Collected()

    def parsed(rank: int, kind: DocKind) -> Iterator[tuple[int, int, int, bytes, Document]]:
        for index, raw in enumerate(lines[kind]):
            try:
                doc = PARSERS[kind](raw)
            except Exception:
                out = Outputs()
                engine.parse(kind, raw, Origin(kind, 0, index), 0, out)
                sink.write(out)
                continue
            yield doc.app_time_ms, rank, index, raw, doc

    count = 0
    for _, rank, index, raw, doc in heapq.merge(*(parsed(rank, kind) for rank, kind in enumerate(KINDS))):
        out = Outputs()
        engine.apply(doc, raw, Origin(KINDS[rank], 0, index), 0, out)
        sink.write(out)
        count += 1
    sink.write(engine.close_all(0))
    return sink.records, count


def _fed(lines: dict[DocKind, list[bytes]], engine: Engine) -> tuple[list[tuple[str, str]], int]:
    sink = Collected()
    count, _ = feed(engine, [(kind, kind, iter(lines[kind])) for kind in KINDS], sink, lambda: 0)
    sink.write(engine.close_all(0))
    return sink.records, count


def _engine() -> Engine:
    return Engine(Settings().rules(), MemoryStore(), MemoryStore(), cache_size=1000, empty=True)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> dict[DocKind, list[bytes]]:
    out = tmp_path_factory.mktemp("trace")
    command = [sys.executable, "-m", "clearance.cli", "generate", str(out), "--orders", "1500", "--seed", "7"]
    subprocess.run(
        [*command, "--fault-rate", "0.4", "--invalid-rate", "0.05"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    return {kind: (out / FILES[kind]).read_bytes().split(b"\n")[:-1] for kind in KINDS}


def test_feed_applies_in_heapq_merge_order(trace: dict[DocKind, list[bytes]]) -> None:
    expected, expected_count = _reference(trace, _engine())
    records, count = _fed(trace, _engine())
    assert count == expected_count > 4000
    assert len(records) > 1500
    assert records == expected


def test_feed_matches_heapq_merge_on_files_out_of_order(trace: dict[DocKind, list[bytes]]) -> None:
    """Files out of appTime order (the contract says they are not, a user's may be): the same order still."""
    rng = random.Random(3)
    shuffled = {}
    for kind, lines in trace.items():
        lines = list(lines)
        for _ in range(len(lines) // 3):  # swap neighbours and far lines
            a = rng.randrange(len(lines))
            b = min(len(lines) - 1, a + rng.choice((1, 2, 50, 400)))
            lines[a], lines[b] = lines[b], lines[a]
        shuffled[kind] = lines
    expected, expected_count = _reference(shuffled, _engine())
    records, count = _fed(shuffled, _engine())
    assert count == expected_count
    assert records == expected
    assert records != _reference(trace, _engine())[0]  # the shuffle changed the outcome: the test can fail


def test_a_missing_or_empty_file_and_progress(trace: dict[DocKind, list[bytes]]) -> None:
    only_orders: dict[DocKind, list[bytes]] = {"order": trace["order"], "payment": [], "waybill": []}
    expected, _ = _reference(only_orders, _engine())
    sink = Collected()
    count, done = feed(_engine(), [("order", "o", iter(trace["order"]))], sink, lambda: 0)
    assert sink.progress_calls == count // 4096
    assert done == sum(len(line) + 1 for line in trace["order"] if _valid("order", line))
    assert feed(_engine(), [], Collected(), lambda: 0) == (0, 0)
    assert expected[: len(sink.records)] == sink.records


def _valid(kind: DocKind, raw: bytes) -> bool:
    try:
        PARSERS[kind](raw)
    except Exception:
        return False
    return True
