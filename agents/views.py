"""The worker's web views: /healthz, /readyz and /metrics (Prometheus text)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from faust.web import Request, Response, View

from agents.faust_internals import acked_offsets, committed_offset, is_recovered
from agents.memory import mallinfo
from agents.metrics import MetricName
from agents.stores import memory

if TYPE_CHECKING:
    from agents.app import Pipeline


def add_views(pipeline: Pipeline) -> None:
    app = pipeline.app

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        if pipeline.delivery.broken:
            return self.text("sends failed: restart me\n", status=503)
        return self.text("ok\n")

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        ready = is_recovered(app)
        return self.text("ready\n" if ready else "not ready\n", status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        body = pipeline.metrics.render(gauges(pipeline))
        return self.text(body, content_type="text/plain; version=0.0.4")


def gauges(pipeline: Pipeline) -> Iterator[tuple[MetricName, dict[str, str], float]]:
    """Open windows; the lag of every assigned input, tick and candidates partition.

    Lag counts from the next offset the agent will receive (its offset check knows it
    for every assigned partition once the first message arrived), else from the
    committed offset: a partition from which nothing has arrived yet shows its whole
    backlog (it used to be left out, so a worker that had not received a single payment
    of a partition reported lag 0 for it)."""
    yield "windows_open", {}, float(pipeline.joiner.open_windows)
    yield "deadlines_indexed", {}, float(sum(len(p.loop.timeline) for p in pipeline.joiner.partitions.values()))
    for kind, size in memory(pipeline.rocksdb).items():
        if kind != "databases":
            yield "rocksdb_memory_bytes", {"kind": kind}, float(size)
    yield "merge_buffered", {}, float(pipeline.joiner.buffered)
    yield "input_partitions_paused", {}, float(pipeline.joiner.paused)
    yield "candidates_held", {}, float(pipeline.quota.held)
    yield "consumer_acked_offsets", {}, float(acked_offsets(pipeline.app))
    if pipeline.producer is not None:
        yield "producer_queue_messages", {}, float(pipeline.producer.pending())
    batch = pipeline.joiner.sender.batch
    if batch is not None:
        yield "candidates_out", {}, float(batch.candidates)
        yield "candidate_records_out", {}, float(batch.records)
    for kind, size in (mallinfo() or {}).items():
        yield "malloc_bytes", {"kind": kind}, float(size)
    collector = pipeline.collector
    for generation, (count, seconds) in enumerate(zip(collector.collections, collector.seconds, strict=True)):
        yield "gc_collections", {"generation": str(generation)}, float(count)
        yield "gc_seconds", {"generation": str(generation)}, seconds
    consumer = pipeline.app.consumer
    for tp in sorted(consumer.assignment()):
        sequence = pipeline.sequences.get(tp.topic)
        if sequence is None:
            continue  # changelogs
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001, S112 - not fetched yet: no lag to report
            continue
        if high is None:
            continue
        done = sequence.next_offset(tp.topic, tp.partition)
        if done is None:
            done = committed_offset(pipeline.app, tp.topic, tp.partition) or 0
        yield "consumer_lag", {"topic": tp.topic, "partition": str(tp.partition)}, float(max(high - done, 0))
