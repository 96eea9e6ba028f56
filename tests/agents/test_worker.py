"""What a worker keeps across a restart (agents/worker.py, agents/acks.py), without a broker."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
import pytest

from agents.acks import Delivery
from agents.worker import CLEAN_STOP, prepare_tables, use_event_loop
from clearance.settings import Settings


def _tables(tmp_path: Path) -> Path:
    tables = tmp_path / "tables"
    (tables / "join-0.db").mkdir(parents=True)
    (tables / "join-0.db" / "CURRENT").write_text("x")
    return tables


IDS = {"clearance-join-changelog": "Gx38i5A5SGuORMhRFh5BBQ", "clearance-quota-changelog": "q2xT0cWfQ0K3o1dWbYy7Zg"}


def test_after_a_clean_stop_the_tables_are_kept_and_the_marker_is_consumed(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    (tables / CLEAN_STOP).write_bytes(orjson.dumps(IDS))
    assert prepare_tables(tables, dict(IDS)) is True
    assert (tables / "join-0.db" / "CURRENT").exists()
    assert not (tables / CLEAN_STOP).exists(), "a crash in this run must not find a marker"


def test_after_anything_else_the_tables_are_deleted(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    assert prepare_tables(tables, IDS) is False
    assert not tables.exists()
    assert prepare_tables(tmp_path / "never-created", IDS) is False


@pytest.mark.parametrize(
    "marker",
    [
        orjson.dumps({**IDS, "clearance-quota-changelog": "recreated00000000000000"}),  # a changelog recreated
        orjson.dumps({"clearance-join-changelog": IDS["clearance-join-changelog"]}),  # one missing
        b"",  # a marker of an older version: no ids
        b"{not json",
    ],
)
def test_tables_kept_against_recreated_changelogs_are_deleted(tmp_path: Path, marker: bytes) -> None:
    tables = _tables(tmp_path)
    (tables / CLEAN_STOP).write_bytes(marker)
    assert prepare_tables(tables, IDS) is False
    assert not tables.exists()


def test_settled_only_when_every_tracked_send_was_delivered() -> None:
    async def run() -> list[bool]:
        loop = asyncio.get_running_loop()
        delivery = Delivery()
        states = [delivery.settled()]  # nothing sent
        pending: asyncio.Future[int] = loop.create_future()
        delivery.track(pending)
        states.append(delivery.settled())  # in flight
        pending.set_result(1)
        states.append(delivery.settled())  # delivered
        failed: asyncio.Future[int] = loop.create_future()
        failed.set_exception(OSError("broker gone"))
        delivery.track(failed)
        states.append(delivery.settled())  # a failed send
        failed.exception()  # retrieved: no "never retrieved" warning
        return states

    assert asyncio.run(run()) == [True, False, True, False]


def test_a_broken_delivery_is_never_settled() -> None:
    delivery = Delivery()
    delivery.fail("test")
    assert not delivery.settled()


def test_the_event_loop_is_a_setting() -> None:
    assert Settings().event_loop == "uvloop"
    assert Settings.from_env({"CLEARANCE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="CLEARANCE_EVENT_LOOP must be one of"):
        Settings.from_env({"CLEARANCE_EVENT_LOOP": "trio"})


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_use_event_loop_makes_every_new_loop_of_that_kind(name: str, module: str) -> None:
    """Faust's loop and its consumer thread's loop are both made after the choice: a loop made
    in another thread is of the chosen kind too."""
    made: list[asyncio.AbstractEventLoop] = []

    def in_a_thread() -> None:
        loop = asyncio.new_event_loop()
        made.append(loop)
        loop.close()

    try:
        use_event_loop(name)
        here = asyncio.new_event_loop()
        here.close()
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        assert type(here).__module__.split(".")[0] == module
        assert type(made[0]).__module__.split(".")[0] == module
    finally:
        asyncio.set_event_loop_policy(None)
