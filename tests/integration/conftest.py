"""Fixtures for tests against a real Apache Kafka broker.

`kafka_bootstrap` (session): KAFKA_BOOTSTRAP when set, else the local broker of
`clearance broker start` (started here if needed, with its data wiped, and stopped
at the end only if started here). Without a broker every integration test is skipped, and the run
ends with a banner saying so; under CI=true it fails instead.

`kafka_settings` (per test): Settings whose topics carry a unique suffix, created
with `ensure_topics` and deleted afterwards, plus a unique app id and data dir.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from agents.topics import internal_specs
from clearance.kafka import admin_config, client_config
from clearance.settings import Settings
from clearance.topics import ensure_topics, topic_specs
from ops.broker import BrokerError, default_home, start_broker, stop_broker
from ops.files import broker_files

TEST_PARTITIONS = 6
_HERE = Path(__file__).resolve().parent
_skipped: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        line = "!" * 78
        terminalreporter.write_line(line, red=True, bold=True)
        terminalreporter.write_line(f"INTEGRATION TESTS SKIPPED: {_skipped[0]}", red=True, bold=True)
        terminalreporter.write_line("run ./scripts/test.sh, or `clearance broker start` first", red=True, bold=True)
        terminalreporter.write_line(line, red=True, bold=True)


def _no_broker(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"no Kafka broker under CI: {reason}")
    _skipped.append(reason)
    pytest.skip(f"NO KAFKA BROKER, integration tests skipped: {reason}")


def _reachable(bootstrap: str) -> bool:
    try:
        admin = AdminClient(client_config(Settings.from_env().with_overrides(bootstrap=bootstrap)))
        return len(admin.list_topics(timeout=10).brokers) > 0
    except Exception:  # noqa: BLE001 - unreachable in any way
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    settings = Settings.from_env()
    if "KAFKA_BOOTSTRAP" in os.environ:
        if not _reachable(settings.bootstrap):
            pytest.fail(f"KAFKA_BOOTSTRAP={settings.bootstrap} is set but no broker answers there")
        yield settings.bootstrap
        return
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        _no_broker("KAFKA_BOOTSTRAP is unset and there is no java to run the local broker")
    files = broker_files(default_home(settings), settings.broker_port)
    try:
        started = start_broker(files, fresh=True)  # a broker we start is a test broker: no old topics
    except BrokerError as exc:
        _no_broker(f"KAFKA_BOOTSTRAP is unset and the local broker did not start: {exc}")
    try:
        yield files.bootstrap
    finally:
        if started:
            stop_broker(files)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings with this test's own topics (created), consumer group and data dir."""
    suffix = uuid.uuid4().hex[:10]
    base = Settings.from_env()
    topics = {f.name: f"{getattr(base, f.name)}.{suffix}" for f in fields(base) if f.name.startswith("topic_")}
    settings = base.with_overrides(
        bootstrap=kafka_bootstrap,
        partitions=TEST_PARTITIONS,
        app_id=f"clearance-test-{suffix}",
        data_dir=str(tmp_path / "data"),
        **topics,
    )
    ensure_topics(settings)
    yield settings
    if os.environ.get("CLEARANCE_TEST_KEEP_TOPICS"):  # debugging: leave them for a look afterwards
        return
    # the worker's internal topics too: left behind, every run added a few hundred partitions to
    # a development broker (8,000 after a few days), and its background work grew with them
    names = [spec.name for spec in (*topic_specs(settings), *internal_specs(settings))]
    admin = AdminClient(admin_config(settings))  # keep a reference: a destroyed client drops its requests
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.exception()  # wait; a topic a test already deleted is fine
