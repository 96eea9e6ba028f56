"""Secure Kafka: `clearance broker start --secure` (SASL_SSL, SCRAM-SHA-512, ACLs) and every client on it.

One secure broker for the whole module (`secure_broker`, started once, on its own port and
directory under the local broker home), so the module costs one broker start. Its ACLs are
PREFIXED on the default topic names and app id, so each test's suffixed topics and app id
fall under them. CLEARANCE_TEST_SECURE_PORT picks the port (default 19093, controller +1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.topics import internal_specs
from clearance.kafka import client_config, producer_config
from clearance.settings import Settings
from clearance.topics import ensure_topics, topic_specs
from ops.broker import BrokerError, _port_open, broker_pid, default_home, start_broker, stop_broker
from ops.files import BrokerFiles, broker_files
from ops.marks import produce_ticks
from ops.secure import client_settings, password_file
from tests.integration.test_worker import (
    CLI,
    FLUSH_MS,
    ROOT,
    Worker,
    _free_port,
    compare,
    consume,
    generate,
    input_messages,
    run_embedded,
    spawn_worker,
    total_records,
    trace_max_ms,
    wait_consumed,
    wait_ready,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3
QUICK_S = 15.0  # "refused within seconds": the probe gives up after 6 s, plus Python's start-up


@dataclass
class SecureBroker:
    files: BrokerFiles
    users: dict[str, str]

    def settings(self, user: str, base: Settings | None = None) -> Settings:
        return client_settings(self.files, user, self.users, base)

    def env(self, user: str, password_file_: Path | None = None) -> dict[str, str]:
        """The KAFKA_* variables of `user` (password from its file, as an operator would)."""
        return {
            "KAFKA_BOOTSTRAP": self.files.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(password_file_ or password_file(self.files, user)),
            "KAFKA_SSL_CA_LOCATION": str(self.files.ca),
        }


def _pick_port(home: Path) -> int:
    wanted = os.environ.get("CLEARANCE_TEST_SECURE_PORT")
    if wanted:
        return int(wanted)
    for port in range(19093, 19193, 2):
        files = broker_files(home, port)
        if (broker_pid(files) is not None and files.secure) or not (_port_open(port) or _port_open(port + 1)):
            return port
    pytest.fail("no free port pair for the secure broker in 19093..19192")


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[SecureBroker]:
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        if os.environ.get("CI"):
            pytest.fail("no java for the secure broker under CI")
        pytest.skip("no java to run the secure broker")
    home = default_home(Settings.from_env())
    files = broker_files(home, _pick_port(home))
    began = time.monotonic()
    try:
        started = start_broker(files, fresh=True, secure=True, settings=Settings())
    except BrokerError as exc:
        pytest.fail(f"the secure broker did not start: {exc}")
    verb = "started" if started else "reused"
    print(f"\nsecure broker on {files.bootstrap}: {verb} in {time.monotonic() - began:.1f} s")
    users = json.loads(files.credentials.read_text(encoding="utf-8"))["users"]
    try:
        yield SecureBroker(files, users)
    finally:
        if started:
            stop_broker(files)


@pytest.fixture
def secure_settings(secure_broker: SecureBroker, tmp_path: Path) -> Iterator[Settings]:
    """Admin's settings with this test's own topics (created), app id and data dir."""
    suffix = uuid.uuid4().hex[:10]
    base = Settings()
    topics = {f.name: f"{getattr(base, f.name)}.{suffix}" for f in fields(base) if f.name.startswith("topic_")}
    settings = secure_broker.settings(
        "admin",
        base.with_overrides(
            partitions=PARTITIONS, app_id=f"clearance-sec-{suffix}", data_dir=str(tmp_path / "data"), **topics
        ),
    )
    ensure_topics(settings)
    yield settings
    admin = AdminClient(client_config(settings))
    names = [s.name for s in (*topic_specs(settings), *internal_specs(settings))]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.exception()


def _as(broker: SecureBroker, user: str, settings: Settings) -> Settings:
    return broker.settings(user, settings)


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARANCE_", "KAFKA_"))} | env
    began = time.monotonic()
    result = subprocess.run([*CLI, *args], env=full, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - began


def _topic_env(settings: Settings) -> dict[str, str]:
    env = {f"CLEARANCE_{f.name.upper()}": getattr(settings, f.name) for f in fields(settings)}
    keep = {k: str(v) for k, v in env.items() if k.startswith("CLEARANCE_TOPIC_")}
    return keep | {"CLEARANCE_PARTITIONS": str(settings.partitions), "CLEARANCE_APP_ID": settings.app_id}


# ---------------------------------------------------------------- the whole path over SASL_SSL


def test_whole_path_over_sasl_ssl_matches_the_embedded_run(
    secure_broker: SecureBroker, secure_settings: Settings, tmp_path: Path
) -> None:
    """replay (as replayer) -> worker (as worker) -> declarations: the same result as `clearance run`."""
    trace = generate(tmp_path / "trace", orders=300, seed=5)
    expected = run_embedded(secure_settings, trace, tmp_path / "embedded")
    worker_env = secure_broker.env("worker") | {"CLEARANCE_LOG_LEVEL": "INFO"}
    worker: Worker = spawn_worker(secure_settings, tmp_path, "w1", **worker_env)
    try:
        wait_ready(worker)
        replay_env = secure_broker.env("replayer") | _topic_env(secure_settings)
        code, out, _ = _run(["replay", str(trace), "--progress", "never"], replay_env, timeout=120)
        assert code == 0, out
        (tmp_path / "replay.log").write_text(out, encoding="utf-8")
        wait_consumed([worker], input_messages(trace), timeout=120)
        replayer = Producer(producer_config(_as(secure_broker, "replayer", secure_settings)))
        produce_ticks(replayer, secure_settings, trace_max_ms(expected) + FLUSH_MS)
        assert replayer.flush(30) == 0
        got = consume(secure_settings, total_records(expected), quiet_s=4.0, timeout=120.0)
        stats = compare(expected, got)
        print(f"differential over SASL_SSL: {dict(stats)}")
        assert worker.get("/healthz")[0] == 200
        _, metrics = worker.get("/metrics")
        assert worker.stop(signal.SIGTERM) == 0
    finally:
        worker.stop(signal.SIGKILL, timeout=10)
    # No log line of any process holds a password, a full ID number or a buyer's name.
    orders = [_json(line) for line in (trace / "orders.jsonl").read_bytes().splitlines()]
    ids = {str(o.get("buyerIdNumber")) for o in orders if isinstance(o, dict) and o.get("buyerIdNumber")}
    buyer_names = {str(o.get("buyerName")) for o in orders if isinstance(o, dict) and o.get("buyerName")}
    assert ids and buyer_names
    logs = {
        "worker": worker.log.read_text(encoding="utf-8", errors="replace"),
        "replay": (tmp_path / "replay.log").read_text(encoding="utf-8"),
        "broker": secure_broker.files.log.read_text(encoding="utf-8", errors="replace"),
        "metrics": metrics,
    }
    for name, text in logs.items():
        for user, password in secure_broker.users.items():
            assert password not in text, f"{user}'s password in the {name} log"
        if name != "broker":
            leaked = [i for i in ids if len(i) >= 15 and i in text]
            assert not leaked, f"an ID number in the {name} log"
            named = [n for n in buyer_names if len(n) >= 2 and n in text]
            assert not named, f"a buyer's name in the {name} log"


def _json(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # the trace's faults: broken lines


# ---------------------------------------------------------------- refusals


def test_a_wrong_password_is_refused_quickly_and_clearly(
    secure_broker: SecureBroker, secure_settings: Settings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password-7f3a\n", encoding="utf-8")
    env = secure_broker.env("worker", wrong) | _topic_env(secure_settings)
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "orders.jsonl").write_text("{}\n", encoding="utf-8")
    commands = {
        "worker": ["worker"],
        "replay": ["replay", str(trace), "--progress", "never"],
        "topics": ["topics", "create"],
    }
    procs = {
        name: (
            time.monotonic(),
            subprocess.Popen(
                [*CLI, *args],
                env={k: v for k, v in os.environ.items() if not k.startswith(("CLEARANCE_", "KAFKA_"))}
                | env
                | {
                    "CLEARANCE_DATA_DIR": str(tmp_path / "data"),
                    "CLEARANCE_WEB_PORT": str(_free_port()),
                    "CLEARANCE_PROCESSES": "1",
                },
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for name, args in commands.items()
    }
    for name, (began, proc) in procs.items():
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name}: still running after 60 s with a wrong password")
        took = time.monotonic() - began
        assert proc.returncode != 0, f"{name} exited 0 with a wrong password"
        assert took < QUICK_S, f"{name} took {took:.1f} s to refuse a wrong password"
        assert "authentication failed" in out and "'worker'" in out, f"{name}: {out}"
        assert "Traceback" not in out and "not-the-password-7f3a" not in out, f"{name}: {out}"
        assert len(out.strip().splitlines()) <= 3, f"{name} printed more than a line or so:\n{out}"


def test_a_plaintext_client_and_an_unknown_ca_are_refused(
    secure_broker: SecureBroker, secure_settings: Settings, tmp_path: Path
) -> None:
    env = _topic_env(secure_settings) | {"KAFKA_BOOTSTRAP": secure_broker.files.bootstrap}
    code, out, took = _run(["topics", "create"], env)
    assert code != 0 and took < QUICK_S, out
    assert "does not speak KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out

    other_ca = tmp_path / "not-our-ca.pem"
    other_ca.write_bytes(
        Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
        if Path("/etc/ssl/certs/ca-certificates.crt").exists()
        else b""
    )
    if other_ca.stat().st_size:
        env = _topic_env(secure_settings) | secure_broker.env("admin") | {"KAFKA_SSL_CA_LOCATION": str(other_ca)}
        code, out, took = _run(["topics", "create"], env)
        assert code != 0 and took < QUICK_S, out
        assert "TLS handshake" in out and "Traceback" not in out, out


def _denied_reading(settings: Settings, topic: str) -> KafkaError:
    """The error of `settings`' user asking for `topic`: its metadata (keyed by the topic) and its offsets."""
    consumer = Consumer({**client_config(settings), "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        error: KafkaError = consumer.list_topics(topic, timeout=15).topics[topic].error
        with pytest.raises(KafkaException):  # the topic does not even show: no offsets, nothing to fetch
            consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=15, cached=False)
        return error
    finally:
        consumer.close()


def _describe_group(settings: Settings) -> KafkaError | None:
    """Describe the worker's group as `settings`' user: None, or the error (a fresh broker's
    group coordinator may still be loading: that is waited out)."""
    admin = AdminClient(client_config(settings))
    deadline = time.monotonic() + 8
    while True:
        future = admin.describe_consumer_groups([settings.app_id], request_timeout=15)[settings.app_id]
        try:
            assert future.result().group_id == settings.app_id
            return None
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            retry = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR)
            if error.code() not in retry or time.monotonic() > deadline:
                return error
        time.sleep(0.5)


def test_the_acls_keep_each_user_to_its_part(
    secure_broker: SecureBroker, secure_settings: Settings, tmp_path: Path
) -> None:
    replayer = _as(secure_broker, "replayer", secure_settings)
    for topic in (secure_settings.topic_matched, secure_settings.topic_deadletter):
        error = _denied_reading(replayer, topic)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    monitor = _as(secure_broker, "monitor", secure_settings)
    assert _denied_reading(monitor, secure_settings.topic_deadletter).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # monitor cannot write the inputs: `clearance replay` as monitor names the topic and the operation.
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "orders.jsonl").write_text('{"orderNo": "X1"}\n', encoding="utf-8")
    try:
        code, out, took = _run(
            ["replay", str(trace), "--progress", "never"], secure_broker.env("monitor") | _topic_env(secure_settings)
        )
    finally:
        shutil.rmtree(trace, ignore_errors=True)
    assert code != 0 and took < QUICK_S, out
    # monitor may describe the inputs (for the worker group's lag), so the first topic replay
    # finds it may not write can be an input or the ticks.
    writes = (*secure_settings.input_topics, secure_settings.topic_ticks)
    assert any(f"user 'monitor' may not write to topic {topic}" in out for topic in writes), out
    assert "Traceback" not in out, out

    # and what they may do: monitor reads the declarations, replayer writes the inputs.
    producer = Producer(producer_config(replayer))
    errors: list[KafkaError | None] = []
    producer.produce(secure_settings.topic_orders, b"{}", key=b"K1", on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(30) == 0 and errors == [None]
    consumer = Consumer({**client_config(monitor), "group.id": "monitor-probe", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(secure_settings.topic_matched, 0), timeout=15)
        assert (low, high) == (0, 0)
    finally:
        consumer.close()
    # monitor describes the worker's group; replayer may not.
    for user, allowed in (("monitor", True), ("replayer", False)):
        outcome = _describe_group(_as(secure_broker, user, secure_settings))
        if allowed:  # an empty group may answer NOT_COORDINATOR or GROUP_ID_NOT_FOUND: not a denial
            assert outcome is None or outcome.code() != KafkaError.GROUP_AUTHORIZATION_FAILED, outcome
        else:
            assert outcome is not None and outcome.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, outcome

    # A worker started as monitor stops at once, naming the operation and the topic it was denied.
    env = secure_broker.env("monitor") | _topic_env(secure_settings) | {"CLEARANCE_WEB_PORT": str(_free_port())}
    env |= {"CLEARANCE_DATA_DIR": str(tmp_path / "denied"), "CLEARANCE_PROCESSES": "1"}
    code, out, took = _run(["worker"], env)
    assert code != 0 and took < QUICK_S, out
    assert "not authorized: user 'monitor' may not " in out and f"topic {secure_settings.app_id}-" in out, out
    assert "Traceback" not in out, out


def test_secure_start_on_a_plaintext_brokers_port_fails_clearly(kafka_bootstrap: str) -> None:
    port = kafka_bootstrap.rsplit(":", 1)[1]
    home = default_home(Settings.from_env())
    code, out, took = _run(["broker", "start", "--secure", "--port", port, "--home", str(home)], {}, timeout=60)
    assert code != 0 and took < 30, out
    assert f"port {port}" in out and ("plaintext broker already runs" in out or "taken by another process" in out), out
    assert "Traceback" not in out, out


def test_no_broker_one_line_quickly_for_every_command(tmp_path: Path) -> None:
    """No broker at KAFKA_BOOTSTRAP: one readable line naming it and how to start one, non-zero, in seconds."""
    port = _free_port()
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "orders.jsonl").write_text("{}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARANCE_", "KAFKA_"))} | {
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "CLEARANCE_DATA_DIR": str(tmp_path / "data"),
        "CLEARANCE_WEB_PORT": str(_free_port()),
        "CLEARANCE_PROCESSES": "1",
    }
    commands = {
        "worker": ["worker"],
        "replay": ["replay", str(trace), "--progress", "never"],
        "topics": ["topics", "create"],
        "bench": ["bench", "--orders", "10", "--results", str(tmp_path / "results"), "--no-table"],
    }
    began = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [*CLI, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, args in commands.items()
    }
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name}: still running after 60 s without a broker")
        assert proc.returncode != 0, f"{name} exited 0 without a broker"
        assert len(out.strip().splitlines()) == 1, f"{name} printed more than one line:\n{out}"
        assert f"no Kafka broker reachable at 127.0.0.1:{port}" in out and "clearance broker start" in out, out
    assert time.monotonic() - began < QUICK_S
