"""Every setting of every shell, read once from the environment.

`Settings.from_env(os.environ)` is the only place that reads the environment.
Core functions receive plain values (`Settings.rules()` builds the core's
`RulesConfig`). Secrets never print: `__repr__` masks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.config import REGIMES, RulesConfig
from pipeline.records import DocKind

DEFAULT_POSITIVE_LIST = Path(__file__).resolve().parent.parent / "pipeline" / "data" / "positive_list.txt"


def load_positive_list(path: Path) -> frozenset[str]:
    """Read the positive list: one 8-digit HS code per line, `#` comments allowed."""
    codes = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            if len(code) != 8 or not code.isdigit():
                raise ValueError(f"{path}: not an 8-digit HS code: {code!r}")
            codes.add(code)
    return frozenset(codes)


def default_processes() -> int:
    """The cores this process may run on (its CPU affinity, as taskset and a container's cpuset set it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Settings:
    """All configuration. Field names map to CLEARANCE_<NAME> environment variables,
    except `bootstrap` and the security settings, which are KAFKA_* (`env_name`)."""

    bootstrap: str = "127.0.0.1:9092"
    topic_orders: str = "clearance.orders"
    topic_payments: str = "clearance.payments"
    topic_waybills: str = "clearance.waybills"
    topic_matched: str = "clearance.declarations.matched"
    topic_flagged: str = "clearance.declarations.flagged"
    topic_deadletter: str = "clearance.deadletter"
    topic_ticks: str = "clearance.ticks"
    partitions: int = 12
    replication: int = 1
    broker_port: int = 9092
    kafka_home: str = ""
    app_id: str = "clearance"
    data_dir: str = "./data"
    web_port: int = 6066
    regime: str = "2019"
    single_limit: Decimal | None = None
    annual_limit: Decimal | None = None
    tax_rate: Decimal | None = None
    window_hours: float = 24.0
    retention_days: float = 7.0
    idle_seconds: float = 30.0
    inspection_rate: float = 0.055
    inspection_seed: str = "clearance"
    positive_list: str = str(DEFAULT_POSITIVE_LIST)
    log_level: str = "INFO"
    processing_guarantee: str = "at_least_once"
    tick_seconds: float = 1.0
    # How often a join partition publishes its event time to the quota stage (at most): the
    # quota stage decides a candidate once every join partition's watermark has passed it, so
    # this bounds the receipt-to-decision time from below (issue 12). One small record per
    # candidates partition per round. 0.05 with the replay's marks every 0.1 s: p99 at 1,000
    # orders/s 373 to 400 ms against 449 to 539 at 0.1 and 0.2, for ~4% more CPU per event
    # at that rate and none measurable under a backlog (benchmarks/RESULTS.md, 5 December).
    watermark_seconds: float = 0.05
    # How long an input topic of a partition must have been silent, and how old the head by its
    # producer's timestamp, before the merge passes the empty queue over (pipeline/merge.py): the
    # producers' skew between topics it covers. 2 s: with 0.5 s the two-process test lost
    # declarations now and then on a loaded machine, and with 0 (Kafka Streams' default) a
    # two-worker stress run differed from `clearance run` in 1 of 8 runs (docs/DESIGN-worker.md).
    merge_wait_seconds: float = 2.0
    # Documents one input topic partition may have waiting in the join's merge queue before it is
    # paused on the consumer (resumed at half): Kafka Streams' buffered.records.per.partition. Under
    # a backlog one topic ran far ahead of another and ~78,000 documents waited, ~5 KB each
    # (issue 13, benchmarks/RESULTS.md "The soak"). 0: unbounded.
    merge_buffer: int = 1000
    # Records Faust's consumer takes from aiokafka per fetch loop (`broker_max_poll_records`).
    # Faust's default takes everything aiokafka holds (1 MiB per partition of ~50 before max_fetch_kb): tens
    # of thousands of records at once under a backlog, each held as a Python object until the
    # batch has been handed on, and a partition held by the merge bound still received the
    # rest of its batch (benchmarks/RESULTS.md "The soak"). 0: Faust's default.
    max_poll_records: int = 500
    # What aiokafka fetches of one partition at a time (Faust's `consumer_max_fetch_size`; its
    # default is 1 MiB). aiokafka hands records out in the order it fetched them, so under a
    # backlog the candidates reached the quota stage only after ~1 MiB of every input partition
    # (8.5 s of the join's work in a case c run of 20,000 orders), and the worker held all of it. At 256 KiB:
    # ~50 MB less peak RSS, the first declaration 0 to 4 s sooner, the same events/s within this
    # machine's noise (4 pairs alternated, benchmarks/RESULTS.md). A
    # larger message still comes whole (the broker returns a partition's first batch whatever its size).
    max_fetch_kb: int = 256
    # How much input the broker gathers before it answers one of the worker's fetches, and how long
    # it may wait for it (aiokafka's fetch_min_bytes and fetch_max_wait_ms; Faust leaves 1 byte and
    # 1.5 s). With 1 byte a worker keeping up with a trickle fetched a few records at a time at ~2 ms
    # of the GIL each: case e at 500 orders/s, the worker used 0.83 to 0.85 cores, 0.54 to 0.59 at
    # 64 KiB and 50 ms, with the same p99 (agents/consumer.py, benchmarks/RESULTS.md). An idle worker
    # fetches 20 times a second. 0: aiokafka's and Faust's own.
    fetch_min_kb: int = 64
    fetch_wait_ms: int = 50
    # How long the worker's librdkafka producer waits to fill a batch before it sends it
    # (`linger.ms`). Every produce request is work for the broker on the same machine: at 20 ms
    # instead of 5 the broker used ~0.25 cores instead of ~0.32 in case d, d did 2 to 7% more
    # events/s (three pairs), and at 1,000 orders/s p50 rose 4 to 9 ms with p99 no worse
    # (benchmarks/RESULTS.md, 5 December). Acks wait for deliveries, not for a send: no lock-step.
    producer_linger_ms: int = 20
    # "event-time" (the contract: a buyer's declarations counted in (eventTime, orderNo) order);
    # "arrival" only to measure what that order costs (benchmarks/RESULTS.md).
    quota_order: str = "event-time"
    commit_seconds: float = 1.0
    # How often the worker asks glibc to give its free memory back to the system
    # (`malloc_trim(0)`, agents/memory.py; 0: never). See benchmarks/RESULTS.md, issue 13.
    malloc_trim_seconds: float = 60.0
    # RocksDB's memory for all of the worker's tables together: one block cache shared by every
    # partition's database, the memtables charged to it (agents/stores.py). It fills to this
    # bound and stays there; the memtables' share is 3/4 of it. 16 costs the worker no more
    # CPU per event than 32 (case c), and holds a park's week of retained orders
    # (`python -m benchmarks.rocksdb_cache`, benchmarks/RESULTS.md).
    rocksdb_cache_mb: int = 16
    # Allocations between two young collections of Python's cyclic GC (CPython's default is
    # 700; 0 keeps it). The middle and full collections keep CPython's ratios above it, and
    # what start-up built is frozen out of them once the worker is ready (agents/memory.py).
    gc_young_threshold: int = 50_000
    # The worker's asyncio event loop: "uvloop" (libuv, the loop's own work in C) or "asyncio"
    # (the standard library's). uvloop gave the worker 12% more events per CPU second on average,
    # 0.99x to 1.24x in 8 pairs (case c, alternating; benchmarks/RESULTS.md, issue 12).
    event_loop: str = "uvloop"
    session_timeout_seconds: float = 15.0
    # How long a worker's clean stop (SIGTERM/SIGINT) may take before the process exits anyway
    # (no clean-stop marker: the next start rebuilds its tables; what was not committed is read
    # again). A stop that waits on an unreachable broker otherwise hangs for minutes, and a
    # `--processes` child whose supervisor was killed stayed alive for hours.
    stop_timeout_seconds: float = 30.0
    # Faust's standby replicas of every table partition (`table_standby_replicas`): another
    # worker of the group keeps a warm copy and takes the partition over without a restore.
    # 0: with one worker there is nowhere to put one, and with several the fast restore
    # (agents/restore.py) is shorter than the group's session timeout (benchmarks/RESULTS.md,
    # "Restore and standbys").
    standby_replicas: int = 0
    # 1: the tables' changelogs are read into local RocksDB with librdkafka before Faust's own
    # recovery (agents/restore.py); 0 only to measure Faust's recovery alone.
    fast_restore: int = 1
    web_bind: str = "127.0.0.1"
    # `clearance monitor`: its page's address and its own consumer group (never the worker's).
    monitor_bind: str = "127.0.0.1"
    monitor_port: int = 8080
    monitor_group: str = "clearance-monitor"
    # `clearance worker`: Faust worker processes on this machine, one consumer group (agents/processes.py).
    # 1 is one process, as before; the default is one per core this process may run on.
    processes: int = field(default_factory=default_processes)
    # Set by `clearance worker --processes N` for each process it starts: N. A process that is
    # the group's leader for its first assignment with fewer members than that holds the
    # assignment a moment (agents/faust_internals.py `PartitionAssignor`), so that processes
    # started together share one generation instead of the first taking every partition and
    # giving half back in a rebalance. 1: never held.
    siblings: int = 1
    # Kafka security (KAFKA_* variables, `env_name`): one configuration for every client.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    sasl_password_file: str = ""
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = env_name(f.name)
            if key in env:
                values[f.name] = _convert(f.name, f.type, env[key])
        if values.get("sasl_password_file") and not values.get("sasl_password"):
            values["sasl_password"] = _read_secret(values["sasl_password_file"])
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"CLEARANCE_REGIME must be one of {sorted(REGIMES)}, not {self.regime!r}")
        if not 0.0 <= self.inspection_rate <= 1.0:
            raise ValueError("CLEARANCE_INSPECTION_RATE must be between 0 and 1")
        if self.partitions < 1:
            raise ValueError("CLEARANCE_PARTITIONS must be at least 1")
        if self.merge_buffer < 0 or self.max_poll_records < 0:
            raise ValueError("CLEARANCE_MERGE_BUFFER and CLEARANCE_MAX_POLL_RECORDS must be 0 (unbounded) or more")
        if self.max_fetch_kb < 1:
            raise ValueError("CLEARANCE_MAX_FETCH_KB must be at least 1")
        if self.fetch_min_kb < 0 or (self.fetch_min_kb > 0 and not 1 <= self.fetch_wait_ms <= 5_000):
            raise ValueError(
                "CLEARANCE_FETCH_MIN_KB must be 0 (aiokafka's own) or more, with CLEARANCE_FETCH_WAIT_MS from 1 to 5000"
            )
        if not 0 <= self.producer_linger_ms <= 1000:
            raise ValueError("CLEARANCE_PRODUCER_LINGER_MS must be from 0 to 1000")
        if self.rocksdb_cache_mb < 4:
            raise ValueError("CLEARANCE_ROCKSDB_CACHE_MB must be at least 4")
        if self.malloc_trim_seconds < 0:
            raise ValueError("CLEARANCE_MALLOC_TRIM_SECONDS must be 0 (never) or more")
        if self.gc_young_threshold < 0:
            raise ValueError("CLEARANCE_GC_YOUNG_THRESHOLD must be 0 (CPython's default) or more")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"CLEARANCE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.event_loop not in EVENT_LOOPS:
            raise ValueError(f"CLEARANCE_EVENT_LOOP must be one of {sorted(EVENT_LOOPS)}, not {self.event_loop!r}")
        if self.window_hours <= 0:
            raise ValueError("CLEARANCE_WINDOW_HOURS must be positive")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ValueError("CLEARANCE_PROCESSING_GUARANTEE must be at_least_once or exactly_once")
        if self.tick_seconds <= 0 or self.commit_seconds <= 0 or self.watermark_seconds <= 0:
            raise ValueError(
                "CLEARANCE_TICK_SECONDS, CLEARANCE_COMMIT_SECONDS and CLEARANCE_WATERMARK_SECONDS must be positive"
            )
        if self.stop_timeout_seconds <= 0:
            raise ValueError("CLEARANCE_STOP_TIMEOUT_SECONDS must be positive")
        if self.processes < 1:
            raise ValueError("CLEARANCE_PROCESSES must be at least 1")
        if self.siblings < 1:
            raise ValueError("CLEARANCE_SIBLINGS must be at least 1")
        if self.standby_replicas < 0:
            raise ValueError("CLEARANCE_STANDBY_REPLICAS must be 0 or more")
        if self.fast_restore not in (0, 1):
            raise ValueError("CLEARANCE_FAST_RESTORE must be 0 or 1")
        if self.session_timeout_seconds < 6:
            raise ValueError("CLEARANCE_SESSION_TIMEOUT_SECONDS must be at least 6 (the broker's minimum)")
        self._validate_security()

    def _validate_security(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together (mutual TLS)")
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{env_name(name)}: no such file: {path}")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.topic_orders, self.topic_payments, self.topic_waybills)

    @property
    def kind_topics(self) -> dict[DocKind, str]:
        """The input topic of each kind of document (the one kind-to-topic map)."""
        return {"order": self.topic_orders, "payment": self.topic_payments, "waybill": self.topic_waybills}

    def rules(self) -> RulesConfig:
        """The core's configuration: the regime's defaults with any override applied."""
        base = REGIMES[self.regime]
        return replace(
            base,
            single_limit_fen=_fen(self.single_limit) if self.single_limit is not None else base.single_limit_fen,
            annual_limit_fen=_fen(self.annual_limit) if self.annual_limit is not None else base.annual_limit_fen,
            tax_rate=self.tax_rate if self.tax_rate is not None else base.tax_rate,
            window_ms=int(self.window_hours * 3_600_000),
            retention_ms=int(self.retention_days * 86_400_000),
            inspection_rate=self.inspection_rate,
            inspection_seed=self.inspection_seed,
            positive_list=load_positive_list(Path(self.positive_list)),
        )


EVENT_LOOPS = ("uvloop", "asyncio")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # CLEARANCE_LOG_LEVEL, read in any case
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_KAFKA_NAMES = frozenset(
    {
        "bootstrap",
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_password_file",
        "ssl_ca_location",
        "ssl_certificate_location",
        "ssl_key_location",
    }
)


def env_name(name: str) -> str:
    """The environment variable of a Settings field: KAFKA_BOOTSTRAP, KAFKA_SASL_*, ... or CLEARANCE_<NAME>."""
    if name == "bootstrap":
        return "KAFKA_BOOTSTRAP"
    return f"KAFKA_{name.upper()}" if name in _KAFKA_NAMES else f"CLEARANCE_{name.upper()}"


def _read_secret(path: str) -> str:
    """The password in KAFKA_SASL_PASSWORD_FILE (one line); errors name the file, never its content."""
    try:
        return Path(path).read_text(encoding="utf-8").strip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"KAFKA_SASL_PASSWORD_FILE: cannot read {path}: {type(exc).__name__}") from None


def _fen(yuan: Decimal) -> int:
    return int((yuan * 100).to_integral_exact())


def _convert(name: str, type_: object, raw: str) -> Any:
    text = str(type_)
    try:
        if "Decimal" in text:
            return Decimal(raw)
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"setting {name}: cannot read {raw!r}") from exc
    if name in ("security_protocol", "sasl_mechanism", "log_level"):
        return raw.strip().upper()
    return raw
