"""`clearance replay` against a real broker: every line once, keyed, Java-partitioned, in appTime order."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clearance.kafka import client_config, producer_config
from clearance.settings import Settings
from ops.marks import produce_ended
from ops.replay import Pacing, key_and_time, read_times, replay
from pipeline.partitioner import partition_of
from tests.fixtures import docs

pytestmark = pytest.mark.integration


def _write_trace(root: Path, orders: int) -> dict[str, list[bytes]]:
    files: dict[str, list[bytes]] = {"orders.jsonl": [], "payments.jsonl": [], "waybills.jsonl": []}
    for i in range(orders):
        order_no = f"TM20261111{i:06d}" + "X" * (i % 7)  # keys of many lengths
        minute = f"{i // 60 % 60:02d}{i % 60:02d}"
        files["orders.jsonl"].append(docs.raw(docs.order(order_no, f"202611110{i // 3600 % 10}{minute}")))
        files["payments.jsonl"].append(docs.raw(docs.payment(order_no, f"202611111{i // 3600 % 10}{minute}")))
        files["waybills.jsonl"].append(docs.raw(docs.waybill(order_no, f"202611110{i // 3600 % 10}{minute}")))
    files["payments.jsonl"].append(b"{not json")  # bad input is sent too, without a key
    for name, lines in files.items():
        (root / name).write_bytes(b"".join(line + b"\n" for line in lines))
    return files


Seen = tuple[str, int, bytes | None, bytes, int]  # topic, partition, key, value, timestamp (ms)


def _consume_all(settings: Settings, expected: int) -> list[Seen]:
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"replay-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t in settings.input_topics for p in range(settings.partitions)])
    seen: list[Seen] = []

    def take(timeout: float) -> None:
        for msg in consumer.consume(1000, timeout=timeout):
            assert msg.error() is None, msg.error()
            topic, partition, value = msg.topic(), msg.partition(), msg.value()
            assert topic is not None and partition is not None and value is not None
            seen.append((topic, partition, msg.key(), value, msg.timestamp()[1]))

    try:
        for _ in range(120):
            take(0.5)
            if len(seen) >= expected:
                break
        take(2.0)  # anything beyond `expected` would be a duplicate
    finally:
        consumer.close()
    return seen


def test_replay_lands_every_line_once_where_java_would(kafka_settings: Settings, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    files = _write_trace(trace, orders=120)
    total = sum(len(lines) for lines in files.values())

    summary = replay(trace, kafka_settings, times_path=tmp_path / "times.csv")  # as fast as possible

    assert (summary.messages, summary.errors, summary.unkeyed, summary.orders) == (total, 0, 1, 120)
    seen = _consume_all(kafka_settings, total)
    topic_file = dict(zip(kafka_settings.input_topics, files, strict=True))
    by_file = defaultdict(list)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for topic, partition, key, value, _ in seen:
        by_file[topic_file[topic]].append(value)
        if key is None:
            assert value == b"{not json"
            continue
        assert orjson.loads(value)["orderNo"].encode() == key
        assert partition == partition_of(key, kafka_settings.partitions)
        partitions_of[key].add(partition)
    for name, lines in files.items():
        assert sorted(by_file[name]) == sorted(lines), f"{name}: not every line exactly once"
    assert all(len(parts) == 1 for parts in partitions_of.values())  # an order's three docs: one partition number
    times = read_times(tmp_path / "times.csv")
    assert set(times) == {key.decode() for key in partitions_of}
    last_create: dict[str, int] = {}
    for _, _, key, _, timestamp in seen:
        if key is not None:
            last_create[key.decode()] = max(last_create.get(key.decode(), 0), timestamp)
    assert times == last_create  # the recorded produce time is the last document's CreateTime


def test_replay_interleaves_by_app_time_within_a_partition(kafka_settings: Settings, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    files = _write_trace(trace, orders=60)
    total = sum(len(lines) for lines in files.values())
    rank = {topic: r for r, topic in enumerate(kafka_settings.input_topics)}

    # 200 msg/s: 5 ms apart, so nearly every message's CreateTime (its produce time, ms) is distinct
    summary = replay(trace, kafka_settings, Pacing("rate", 200))

    assert 0.8 < summary.seconds < 10
    seen = _consume_all(kafka_settings, total)
    assert len({timestamp for *_, timestamp in seen}) > 0.8 * total
    per_partition: dict[int, dict[int, list[tuple[str, int]]]] = defaultdict(lambda: defaultdict(list))
    for topic, partition, key, value, timestamp in seen:
        if key is not None:
            per_partition[partition][timestamp].append((orjson.loads(value)["appTime"], rank[topic]))
    for by_time in per_partition.values():
        # across the three topics, in produce order: everything sent earlier sorts no later
        # by (appTime, orders < payments < waybills); messages of the same ms are not ordered
        latest_before: tuple[str, int] = ("", -1)
        for timestamp in sorted(by_time):
            assert min(by_time[timestamp]) >= latest_before
            latest_before = max(latest_before, *by_time[timestamp])


def test_with_flush_ticks_each_topic_s_end_is_sent_once_it_is_delivered(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """`--flush-ticks`: as each input topic's last document is delivered, one tick per partition
    `{"ended": topic, "end": offset}` with that partition's log end, before the flush ticks; a
    worker stops waiting for that topic's queue once it has received up to `end` (agents/join.py)."""
    trace = tmp_path / "trace"
    trace.mkdir()
    files = _write_trace(trace, orders=90)
    total = sum(len(lines) for lines in files.values())

    summary = replay(trace, kafka_settings, flush_ticks_ms=0, watermarks_s=60)

    partitions = kafka_settings.partitions
    assert (summary.ended, summary.ticks, summary.marks) == (3 * partitions, partitions, 0)
    seen = _consume_all(kafka_settings, total)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for topic, partition, *_ in seen:
        counts[topic, partition] += 1
    ticks = _read_ticks(kafka_settings, 4 * partitions)
    for partition in range(partitions):
        mine = [orjson.loads(value) for p, value in ticks if p == partition]
        ended = {t["ended"]: t["end"] for t in mine if "ended" in t}
        assert ended == {topic: counts[topic, partition] for topic in kafka_settings.input_topics}
        assert "eventTime" in mine[-1] and all("ended" in t for t in mine[:-1]), "the flush comes last"


def test_input_loaded_before_is_told_where_it_ends(kafka_settings: Settings, tmp_path: Path) -> None:
    """`produce_ended` (the benchmark's pre-loaded backlog, a backfill loaded by another tool): for
    every input topic, one `{"ended": topic, "end": offset}` per partition with that partition's
    log end, stamped after every document (a worker's merge takes an end only for heads produced
    before its tick)."""
    trace = tmp_path / "trace"
    trace.mkdir()
    files = _write_trace(trace, orders=60)
    total = sum(len(lines) for lines in files.values())
    summary = replay(trace, kafka_settings)  # no --watermarks: it says nothing of the ends
    assert summary.ended == 0

    sent = produce_ended(Producer(producer_config(kafka_settings)), kafka_settings)

    partitions = kafka_settings.partitions
    assert sent == 3 * partitions
    seen = _consume_all(kafka_settings, total)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for topic, partition, *_ in seen:
        counts[topic, partition] += 1
    assert sum(counts.values()) == total
    ticks = _read_stamped_ticks(kafka_settings, sent)
    for partition in range(partitions):
        mine = [orjson.loads(value) for p, value, _ in ticks if p == partition]
        assert {t["ended"]: t["end"] for t in mine} == {
            topic: counts[topic, partition] for topic in kafka_settings.input_topics
        }
        assert len(mine) == 3
    assert min(stamp for *_, stamp in ticks) >= max(seen_ms for *_, seen_ms in seen)


def _read_ticks(settings: Settings, expected: int) -> list[tuple[int, bytes]]:
    return [(partition, value) for partition, value, _ in _read_stamped_ticks(settings, expected)]


def _read_stamped_ticks(settings: Settings, expected: int) -> list[tuple[int, bytes, int]]:
    """(partition, value, timestamp ms) of the first `expected` ticks."""
    consumer = Consumer({**client_config(settings), "group.id": f"replay-test-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(settings.topic_ticks, p, 0) for p in range(settings.partitions)])
    ticks: list[tuple[int, bytes, int]] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                partition, value = msg.partition(), msg.value()
                assert partition is not None and value is not None
                ticks.append((partition, value, msg.timestamp()[1]))
            if len(ticks) >= expected:
                break
    finally:
        consumer.close()
    assert len(ticks) == expected
    return ticks


def test_a_watermark_says_where_every_document_up_to_its_app_time_is(kafka_settings: Settings, tmp_path: Path) -> None:
    """`--watermarks`: each `{"through": ms, "ends": {...}}` tick of a partition is a promise the
    worker's merge relies on: every document of that partition with an appTime up to `ms` is
    below `ends[topic]`. Checked against what the topics hold, for every mark of a paced replay."""
    trace = tmp_path / "trace"
    trace.mkdir()
    files = _write_trace(trace, orders=90)
    total = sum(len(lines) for lines in files.values())

    summary = replay(trace, kafka_settings, Pacing("rate", 250), watermarks_s=0.1)  # ~1.1 s

    assert summary.marks >= 3 * kafka_settings.partitions, summary
    seen = _consume_offsets(kafka_settings, total)
    ticks = [(p, orjson.loads(v)) for p, v in _read_ticks(kafka_settings, summary.marks + summary.ended)]
    marks = [(p, t) for p, t in ticks if "through" in t]
    assert len(marks) == summary.marks
    for partition, mark in marks:
        for topic, offset, time_ms in seen:
            if topic[1] == partition and time_ms <= mark["through"]:
                assert offset < mark["ends"][topic[0]], (partition, mark, topic, offset)
    for partition in range(kafka_settings.partitions):
        throughs = [t["through"] for p, t in marks if p == partition]
        assert throughs == sorted(set(throughs)), "each mark is later than the one before"


def _consume_offsets(settings: Settings, expected: int) -> list[tuple[tuple[str, int], int, int]]:
    """((topic, partition), offset, appTime ms) of every document with an appTime."""
    consumer = Consumer({**client_config(settings), "group.id": f"replay-test-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(t, p, 0) for t in settings.input_topics for p in range(settings.partitions)])
    out: list[tuple[tuple[str, int], int, int]] = []
    count = 0
    try:
        for _ in range(120):
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                count += 1
                topic, partition, offset, value = msg.topic(), msg.partition(), msg.offset(), msg.value()
                assert topic is not None and partition is not None and offset is not None and value is not None
                key, time_ms = key_and_time(value)
                if time_ms is not None:
                    out.append(((topic, partition), offset, time_ms))
            if count >= expected:
                break
    finally:
        consumer.close()
    assert count == expected
    return out
