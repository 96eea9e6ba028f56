"""The fast restore (agents/restore.py) on a stand-in consumer and a real rocksdict database,
and its hook in Faust's recovery (faust_internals.before_active_recovery) on a stand-in recovery."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from faust.types import TP
from rocksdict import Options, Rdict

import agents.restore as restore_module
from agents.faust_internals import before_active_recovery
from agents.restore import Part, restore
from clearance.settings import Settings

OFFSET_KEY = b"__faust\0offset__"


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._t, self._p, self._o, self._k, self._v = topic, partition, offset, key, value
        self._error: Any = None

    @classmethod
    def eof(cls, topic: str, partition: int) -> Msg:
        msg = cls(topic, partition, -1001, None, None)
        msg._error = KafkaError(KafkaError._PARTITION_EOF)
        return msg

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class StandInConsumer:
    """Hands out `messages` in rounds of `per_round`, from the assigned offsets on."""

    messages: list[Msg] = []
    per_round = 2

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queue: list[Msg] = []

    def assign(self, tps: list[Any]) -> None:
        start = {(tp.topic, tp.partition): tp.offset for tp in tps}
        self.queue = [
            m
            for m in self.messages
            if (m.topic(), m.partition()) in start and (m.error() or m.offset() >= start[m.topic(), m.partition()])
        ]

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        out, self.queue = self.queue[: self.per_round], self.queue[self.per_round :]
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> type[StandInConsumer]:
    monkeypatch.setattr(restore_module, "Consumer", StandInConsumer)
    return StandInConsumer


def _db(path: Path) -> Rdict:
    return Rdict(str(path), Options(raw_mode=True))


def test_records_tombstones_and_the_offset_go_into_the_database(
    consumer: type[StandInConsumer], tmp_path: Path
) -> None:
    db = _db(tmp_path / "join-0.db")
    db[b"gone"] = b"old"
    consumer.messages = [
        Msg("cl", 0, 3, b"a", b"1"),
        Msg("cl", 0, 4, b"b", b"2"),
        Msg("cl", 0, 5, b"a", b"3"),  # the last value wins
        Msg("cl", 0, 6, b"gone", None),  # a tombstone deletes
        Msg("cl", 0, 7, b"late", b"x"),  # at the high watermark Faust built: its recovery reads it
        Msg.eof("cl", 0),
    ]
    reached = restore(Settings(), [Part("cl", 0, 3, 7, db, OFFSET_KEY)], threading.Event(), 60.0)
    assert reached == {("cl", 0): 6}
    assert db[b"a"] == b"3" and db[b"b"] == b"2"
    assert db.get(b"gone") is None and db.get(b"late") is None
    assert db[OFFSET_KEY] == b"6"
    db.close()


def test_a_partition_that_ends_early_stops_at_its_end_of_file(consumer: type[StandInConsumer], tmp_path: Path) -> None:
    one, two = _db(tmp_path / "quota-1.db"), _db(tmp_path / "quota-2.db")
    consumer.messages = [Msg("q", 1, 0, b"k", b"v"), Msg.eof("q", 1), Msg("q", 2, 10, b"z", b"w"), Msg.eof("q", 2)]
    parts = [Part("q", 1, 0, 5, one, OFFSET_KEY), Part("q", 2, 10, 11, two, OFFSET_KEY)]
    assert restore(Settings(), parts, threading.Event(), 60.0) == {("q", 1): 0, ("q", 2): 10}
    assert one[OFFSET_KEY] == b"0" and two[OFFSET_KEY] == b"10"
    one.close()
    two.close()


def test_stopped_it_leaves_the_rest_and_a_consistent_offset(consumer: type[StandInConsumer], tmp_path: Path) -> None:
    db = _db(tmp_path / "join-3.db")
    consumer.messages = [Msg("cl", 3, n, b"%d" % n, b"v") for n in range(10)]
    stop = threading.Event()
    stop.set()
    assert restore(Settings(), [Part("cl", 3, 0, 10, db, OFFSET_KEY)], stop, 60.0) == {}
    assert db.get(OFFSET_KEY) is None
    db.close()


class Store:
    offset_key = OFFSET_KEY

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = _db(self.path / f"t-{partition}.db")
        return self.dbs[partition]


class Table:
    def __init__(self, store: Store) -> None:
        self.data = store


class Recovery:
    """What the hook reads of Faust's Recovery, and the step it wraps."""

    def __init__(self, table: Table) -> None:
        self.tp_to_table = {TP("cl", 0): table, TP("cl", 1): table}
        self.active_highwaters = Counter({TP("cl", 0): 4, TP("cl", 1): -1})  # last offsets; -1 empty
        self.seen: dict[TP, int | None] = {}

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        self.seen = dict(destination)


class App:
    class conf:  # noqa: N801 - Faust's app.conf
        broker_request_timeout = 90.0

    def __init__(self, recovery: Recovery) -> None:
        self.tables = type("Tables", (), {"recovery": recovery})()


def test_faust_recovery_starts_where_the_restore_stopped(tmp_path: Path) -> None:
    recovery = Recovery(Table(Store(tmp_path)))
    calls: list[list[tuple[str, int, int, int]]] = []

    def fake_restore(parts: list[Part], stop: threading.Event, budget: float) -> dict[tuple[str, int], int]:
        calls.append([(p.topic, p.partition, p.start, p.end) for p in parts])
        assert budget == 45.0
        return {("cl", 0): 4}

    before_active_recovery(App(recovery), fake_restore)  # type: ignore[arg-type]  # stand-in App
    destination: Any = Counter({TP("cl", 0): 1, TP("cl", 1): None})  # as Faust's: None for no persisted offset
    asyncio.run(recovery._build_offsets(None, {TP("cl", 0), TP("cl", 1)}, destination, "active"))
    assert calls == [[("cl", 0, 2, 5)]]  # from after the persisted offset to the high watermark; empty left out
    assert recovery.seen == {TP("cl", 0): 4, TP("cl", 1): None}
    asyncio.run(recovery._build_offsets(None, {TP("cl", 0)}, Counter(), "standby"))
    assert len(calls) == 1, "standby partitions are left to Faust"


def test_a_read_error_keeps_what_was_written(consumer: type[StandInConsumer], tmp_path: Path) -> None:
    db = _db(tmp_path / "join-4.db")
    broken = Msg("cl", 4, -1, None, None)
    broken._error = KafkaError(KafkaError._TRANSPORT)
    consumer.messages = [Msg("cl", 4, 0, b"a", b"1"), Msg("cl", 4, 1, b"b", b"2"), broken]
    assert restore(Settings(), [Part("cl", 4, 0, 9, db, OFFSET_KEY)], threading.Event(), 60.0) == {("cl", 4): 1}
    assert db[OFFSET_KEY] == b"1" and db[b"b"] == b"2"
    db.close()
