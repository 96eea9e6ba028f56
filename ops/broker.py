"""`clearance broker start|stop|status`: a local single-node Apache Kafka (KRaft).

The broker runs detached (`java -cp 'libs/*' kafka.Kafka server.properties`) with a
pid file, so it outlives the command that started it; `stop` ends it. Starting
while one runs on the same port is a no-op. Python callers (the integration test
fixture) use `start_broker`, `stop_broker` and `broker_pid`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from clearance.settings import Settings
from ops.distribution import KAFKA_VERSION, KafkaDistError, ensure_jars, jars_size
from ops.files import BrokerFiles, broker_files, write_config
from ops.secure import apply_acls, client_settings, ensure_credentials, ensure_tls, scram_arguments

_HEAP = ("-Xms256m", "-Xmx1g")
_JVM = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")
# Detach: the shell backgrounds java and exits, so java is nobody's child here.
_SPAWN = 'out="$1"; shift; "$@" </dev/null >"$out" 2>&1 & echo $!'


class BrokerError(RuntimeError):
    """The local broker could not be started or stopped."""


def default_home(settings: Settings) -> Path:
    """`.kafka/` at the repository root, or ~/.cache/clearance/kafka when installed."""
    if settings.kafka_home:
        return Path(settings.kafka_home)
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists():
        return repo / ".kafka"
    return Path.home() / ".cache" / "clearance" / "kafka"


def broker_pid(files: BrokerFiles) -> int | None:
    """The pid of the broker running from `files`, or None."""
    try:
        pid = int(files.pid.read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # A reused pid or a zombie (empty cmdline) is not our broker.
    return pid if str(files.properties).encode() in cmdline else None


def start_broker(
    files: BrokerFiles,
    *,
    timeout: float = 120.0,
    fresh: bool = False,
    secure: bool = False,
    settings: Settings | None = None,
) -> bool:
    """Start the broker unless it runs; wait until it answers. True if this call started it.

    `secure`: a SASL_SSL listener with TLS, SCRAM users and ACLs (ops/secure.py); the ACLs
    are (re)applied for the topics and app id of `settings` at every start.
    """
    files.root.mkdir(parents=True, exist_ok=True)
    with _locked(files):
        pid = broker_pid(files)
        if pid is not None and files.secure != secure:
            running, wanted = ("secure", "plaintext") if files.secure else ("plaintext", "secure")
            raise BrokerError(
                f"a {running} broker already runs on port {files.port} (pid {pid}); a {wanted} one needs "
                "another port (--port) or `clearance broker stop` first"
            )
        if pid is None and _port_open(files.port):
            raise BrokerError(f"port {files.port} is taken by another process; try --port")
        users = _secure_files(files) if secure else None
        if pid is not None:
            _wait_ready(files, timeout, users)
            if users is not None:
                _acls(files, users, settings)
            return False
        try:
            libs = ensure_jars(files.root.parent.parent)
        except KafkaDistError as exc:
            raise BrokerError(str(exc)) from exc
        if fresh and files.data.exists():
            shutil.rmtree(files.data)
        write_config(files, None if users is None else users["admin"])
        if not files.formatted:
            _format_storage(files, libs, scram_arguments(users) if users is not None else [])
        pid = _spawn(files, libs)
        files.pid.write_text(f"{pid}\n", encoding="ascii")
        _wait_ready(files, timeout, users)
        if users is not None:
            _acls(files, users, settings)
        return True


def _secure_files(files: BrokerFiles) -> dict[str, str]:
    try:
        ensure_tls(files)
        return ensure_credentials(files)
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot prepare the TLS files and credentials in {files.root}: {exc}") from exc


def _acls(files: BrokerFiles, users: dict[str, str], settings: Settings | None) -> None:
    from confluent_kafka import KafkaException

    try:
        apply_acls(files, users, settings or Settings())
    except KafkaException as exc:
        raise BrokerError(f"cannot create the ACLs: {exc}") from exc


def stop_broker(files: BrokerFiles, *, timeout: float = 30.0) -> bool:
    """SIGTERM the broker, SIGKILL it after `timeout` s. True if one was running."""
    pid = broker_pid(files)
    if pid is None:
        files.pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while broker_pid(files) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if broker_pid(files) is not None:
        os.kill(pid, signal.SIGKILL)
        while broker_pid(files) is not None:
            time.sleep(0.1)
    files.pid.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def _locked(files: BrokerFiles) -> Iterator[None]:
    with files.lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def _classpath(files: BrokerFiles, libs: Path) -> list[str]:
    return [f"-Dlog4j2.configurationFile={files.log4j}", "-cp", f"{libs}/*"]


def _format_storage(files: BrokerFiles, libs: Path, extra: list[str]) -> None:
    command = [_java(), "-Xmx256m", *_classpath(files, libs), "kafka.tools.StorageTool", "format"]
    command += ["--cluster-id", _cluster_id(), "--config", str(files.properties), "--ignore-formatted", *extra]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        raise BrokerError(f"cannot run java ({command[0]}): {exc}") from exc
    if result.returncode != 0:
        output = f"{result.stdout}{result.stderr}"
        for secret in extra[1::2]:  # --add-scram's values hold passwords
            output = output.replace(secret, "[name=...,password=***]")
        raise BrokerError(f"formatting KRaft storage failed:\n{output}")


def _cluster_id() -> str:
    """A Kafka Uuid string: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _spawn(files: BrokerFiles, libs: Path) -> int:
    command = [_java(), *_HEAP, *_JVM, *_classpath(files, libs), "kafka.Kafka", str(files.properties)]
    result = subprocess.run(  # noqa: S603
        ["sh", "-c", _SPAWN, "sh", str(files.out), *command],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    return int(result.stdout.strip())


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(files: BrokerFiles, timeout: float, users: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_pid(files) is None:
            raise BrokerError(f"the broker exited during start-up; see {files.log} and {files.out}")
        if _port_open(files.port) and _answers(files, users):
            return
        time.sleep(0.25)
    raise BrokerError(f"the broker did not answer within {timeout:.0f} s; see {files.log}")


def _answers(files: BrokerFiles, users: dict[str, str] | None) -> bool:
    from confluent_kafka.admin import AdminClient

    from clearance.kafka import client_config

    settings = Settings(bootstrap=files.bootstrap) if users is None else client_settings(files, "admin", users)
    admin = AdminClient({**client_config(settings), "log_level": 0})
    try:
        return len(admin.list_topics(timeout=5).brokers) > 0
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False


def cli(argv: list[str]) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="clearance broker", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=settings.broker_port, help="listener port (controller: port+1)")
    parser.add_argument("--home", type=Path, default=default_home(settings), help="jars and broker state")
    parser.add_argument("--fresh", action="store_true", help="start: wipe the broker's data first")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="start: a SASL_SSL listener (TLS, SCRAM-SHA-512 users, ACLs); credentials in the broker's directory",
    )
    args = parser.parse_args(argv)
    files = broker_files(args.home, args.port)
    try:
        if args.action == "start":
            return _start(files, args.fresh, args.secure, settings)
        return _ACTIONS[args.action](files)
    except BrokerError as exc:
        print(f"clearance broker: {exc}", file=sys.stderr)
        return 1


def _start(files: BrokerFiles, fresh: bool, secure: bool, settings: Settings) -> int:
    began = time.monotonic()
    started = start_broker(files, fresh=fresh, secure=secure, settings=settings)
    verb = f"started in {time.monotonic() - began:.1f} s" if started else "was already running"
    print(f"Kafka {KAFKA_VERSION} {verb} (pid {broker_pid(files)}, log {files.log})", file=sys.stderr)
    if secure:
        print(f"SASL_SSL, CA {files.ca}; users and passwords in {files.credentials} (mode 0600)", file=sys.stderr)
    print(files.bootstrap)
    return 0


def _stop(files: BrokerFiles) -> int:
    print("stopped" if stop_broker(files) else "not running", file=sys.stderr)
    return 0


def _status(files: BrokerFiles) -> int:
    pid = broker_pid(files)
    if pid is None:
        print(f"not running (port {files.port})")
        return 1
    libs = files.root.parent.parent / KAFKA_VERSION / "libs"
    print(f"running: Kafka {KAFKA_VERSION}, pid {pid}, {files.bootstrap}, jars {jars_size(libs) / 1e6:.1f} MB")
    if files.secure:
        print(f"secure: SASL_SSL (SCRAM-SHA-512), CA {files.ca}, credentials {files.credentials} (mode 0600)")
    return 0


_ACTIONS = {"stop": _stop, "status": _status}
