"""`clearance worker`: run one Faust worker of the pipeline on Kafka.

Every setting comes from the environment (clearance/settings.py: KAFKA_BOOTSTRAP,
CLEARANCE_*). SIGTERM and SIGINT stop it cleanly: the streams drain, offsets are
committed, tables are closed; a stop that has not finished after
CLEARANCE_STOP_TIMEOUT_SECONDS ends the process anyway (agents/deadline.py). The web
port serves /healthz (the event loop answers and no send failed), /readyz (recovered, not rebalancing) and /metrics
(Prometheus text). The local table state is kept after a clean stop and rebuilt from the
changelogs after any other (see docs/DESIGN-worker.md, "Delivery").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

import orjson

from agents.deadline import StopDeadline
from agents.memory import limit_arenas
from agents.topics import TABLES, changelog_topic, prepare_broker
from clearance.kafka import admin_config
from clearance.settings import Settings
from clearance.topics import TopicsError

log = logging.getLogger("clearance.worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearance worker",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="All settings come from the environment: KAFKA_BOOTSTRAP, CLEARANCE_APP_ID, CLEARANCE_DATA_DIR, "
        "CLEARANCE_WEB_PORT, CLEARANCE_PARTITIONS, CLEARANCE_TOPIC_*, CLEARANCE_WINDOW_HOURS, "
        "CLEARANCE_IDLE_SECONDS, CLEARANCE_PROCESSING_GUARANTEE, CLEARANCE_PROCESSES...",
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="worker processes in one consumer group (CLEARANCE_PROCESSES; default: one per core). "
        "1 runs this process as the worker; more run under a supervisor (agents/processes.py)",
    )
    # Given by the `--processes N` supervisor to its processes: its start gate's two pipe ends
    # (agents/processes.py `StartGate`). The process waits there once Faust is imported; the gate
    # opens after the supervisor has reached the broker and made the internal topics, so the
    # process does not do that again (0.1 to 0.15 s of its start).
    parser.add_argument("--start-gate", metavar="ARRIVED,GO", help=argparse.SUPPRESS)
    return parser


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env().with_overrides(processes=args.processes)
    except ValueError as exc:
        print(f"clearance worker: {exc}", file=sys.stderr)
        return 2
    if settings.processes > 1:
        from agents.processes import supervise

        return supervise(settings)
    return run(settings, gate=args.start_gate)


def run(settings: Settings, *, gate: str | None = None) -> int:
    """One worker in this process, until it stops: its exit code. `gate`: the supervisor's start
    gate (`pass_gate`), which opens once it has checked the broker and made the internal topics."""
    # Faust is imported here, not at the module's top: the `--processes N` supervisor runs
    # `cli` without it (importing it cost the supervisor 0.6 CPU-s before it started a process).
    from agents.app import build
    from agents.faust_internals import DeadlineWorker

    limit_arenas()  # before RocksDB's and librdkafka's threads (agents/memory.py)
    use_event_loop(settings.event_loop)  # before Faust's app, its consumer thread and their loops
    try:
        pipeline = build(settings)
    except (ValueError, OSError) as exc:
        print(f"clearance worker: {exc}", file=sys.stderr)
        return 2
    if gate is not None:
        if not pass_gate(gate):
            return 1  # the supervisor's check failed, and it said so
    elif code := prepare_broker(settings):
        return code
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    tables = Path(pipeline.app.conf.tabledir)
    try:
        changelogs = changelog_ids(settings)
    except TopicsError as exc:
        print(f"clearance worker: {exc}", file=sys.stderr)
        return 1
    kept = prepare_tables(tables, changelogs)
    logging.getLogger("clearance").setLevel(settings.log_level)

    @pipeline.app.task  # type: ignore[untyped-decorator]  # faust's task decorator is untyped
    async def report_tables() -> None:
        log.info("event loop: %s (CLEARANCE_EVENT_LOOP)", type(asyncio.get_running_loop()).__module__.split(".")[0])
        if kept:
            log.info("local table state kept (the last run stopped cleanly): recovery reads only what is newer")
        else:
            log.info(
                "local table state rebuilt from the changelogs (first start, or the last run did not stop cleanly)"
            )

    deadline = StopDeadline(settings.stop_timeout_seconds)
    worker = DeadlineWorker(pipeline.app, loglevel=settings.log_level, quiet=True, deadline=deadline)
    # Faust's terminal spinner sets the root logger to DEBUG (so that it spins on every record) when
    # the level is WARNING or above: then every debug call of Faust and aiokafka builds a record, about
    # 5% of the worker's time in the profile. A worker runs without a terminal; no spinner.
    worker.spinner = None
    pipeline.collector.install()
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    finally:
        pipeline.collector.uninstall()
    if code == 0 and pipeline.delivery.settled() and tables.is_dir():
        # Whole or absent (the deadline's exit may come at any moment): written aside, then renamed.
        aside = tables / f"{CLEAN_STOP}.tmp"
        aside.write_bytes(orjson.dumps(changelogs))
        aside.replace(tables / CLEAN_STOP)
    return code


def pass_gate(gate: str) -> bool:
    """Arrive at the supervisor's start gate ("ARRIVED,GO": two inherited pipe ends) and wait
    until it opens: True; False when it was closed instead (the supervisor's check failed, or
    the supervisor is gone)."""
    arrived, go = (int(fd) for fd in gate.split(","))
    try:
        os.write(arrived, b".")
        return os.read(go, 1) == b"."
    except OSError:
        return False
    finally:
        for fd in (arrived, go):
            with contextlib.suppress(OSError):
                os.close(fd)


def use_event_loop(name: str) -> None:
    """Every event loop the process creates from now on (Faust's, and the one of its consumer
    thread) is uvloop's, or asyncio's own for "asyncio" (CLEARANCE_EVENT_LOOP).

    uvloop runs the loop itself in C (libuv): scheduling a callback, running a handle, the
    selector. Faust pays those per message several times over (its fetcher's futures and
    tasks, the conductor, the stream), and they were a sixth of the worker's main thread with
    asyncio's loop (benchmarks/RESULTS.md, issue 12)."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)  # asyncio's default


CLEAN_STOP = "clean-stop"


def changelog_ids(settings: Settings) -> dict[str, str]:
    """The topic id of each changelog topic: a topic deleted and created again gets a new one."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    names = [changelog_topic(settings, table) for table in TABLES]
    admin = AdminClient(admin_config(settings))
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=30)
        return {name: str(future.result().topic_id) for name, future in futures.items()}
    except KafkaException as exc:
        raise TopicsError(f"cannot describe the changelog topics: {exc}") from exc


def prepare_tables(tables: Path, changelogs: dict[str, str]) -> bool:
    """Keep the local tables only after a clean stop against the same changelogs; True when kept.

    After a crash the local RocksDB can be ahead of the changelog (writes whose changelog
    record never left the process), so it is deleted and recovered from the changelogs:
    local state = changelog for every owner of a partition. After a clean stop (SIGTERM,
    exit 0, every send and changelog record delivered) the two are equal, and Faust's
    recovery reads only the changelog records newer than the local ones. The marker holds
    the changelog topics' ids at that stop: a changelog deleted and created again since
    (a load tester recreating the topics between replays) has another id, and the old
    tables would be kept against it. Faust then either stops with a ConsistencyError (its
    persisted offset above the new topic's end) or, worse, silently skips the new records
    below that offset. So the tables are kept only when every id is unchanged. The marker
    is removed before anything runs, so a crash in this run leaves none."""
    marker = tables / CLEAN_STOP
    if marker.exists():
        try:
            recorded = orjson.loads(marker.read_bytes() or b"null")
        except orjson.JSONDecodeError:
            recorded = None
        marker.unlink()
        if recorded == changelogs:
            return True
        log.warning("local tables dropped: the changelog topics were recreated since the clean stop that kept them")
    shutil.rmtree(tables, ignore_errors=True)
    return False
