"""The worker's join-table value (agents/outbox.py): core state + outbox, without a broker."""

from __future__ import annotations

import orjson
import pytest

from agents.outbox import OutboxEntry, Stored, TableStates, decode_stored, encode_stored
from agents.sender import Emit
from pipeline.codec import encode_state
from pipeline.errors import StateCodecError
from pipeline.join import JoinState, Step
from pipeline.records import OrderId

STATE = JoinState(order_no=OrderId("PK1"), deadline_ms=1_000)
DECLARATION = orjson.dumps({"orderNo": "PK1", "status": "REJECTED", "reasons": ["MISSING_ORDER"]})


def test_without_outbox_the_value_is_the_core_state_encoding() -> None:
    assert encode_stored(Stored(STATE)) == encode_state(STATE)
    assert decode_stored(encode_state(STATE)) == Stored(STATE)


def test_the_outbox_round_trips_with_each_declarations_status() -> None:
    emits = (Emit("flagged", b"PK1", DECLARATION, "REJECTED"), Emit("candidates", b"buyer", b'{"c":1}'))
    stored = Stored(STATE, (OutboxEntry("orders", 7, emits),))
    assert decode_stored(encode_stored(stored)) == stored


def test_rows_written_before_the_status_was_stored_read_it_from_the_payload() -> None:
    old = encode_state(STATE) + b"\x00" + orjson.dumps([["orders", 7, [["flagged", "PK1", DECLARATION.decode()]]]])
    (entry,) = decode_stored(old).outbox
    assert entry.emits == (Emit("flagged", b"PK1", DECLARATION, "REJECTED"),)


def test_a_corrupt_outbox_is_a_codec_error() -> None:
    with pytest.raises(StateCodecError):
        decode_stored(encode_state(STATE) + b"\x00" + orjson.dumps([["orders", 7, [["nowhere", "k", "v"]]]]))


def _table_with_outboxes(count: int) -> dict[bytes, bytes]:
    table: dict[bytes, bytes] = {}
    for n in range(count):
        order_no = OrderId(f"PK{n}")
        emits = (Emit("flagged", order_no.encode(), DECLARATION, "REJECTED"),)
        stored = Stored(JoinState(order_no=order_no, deadline_ms=1_000), (OutboxEntry("orders", n, emits),))
        table[order_no.encode()] = encode_stored(stored)
    return table


def test_loads_that_are_never_saved_keep_no_outbox() -> None:
    """A decided order's stale window deadline is loaded and never saved (issue 13: one decoded
    outbox per retained decided order stayed in the heap until its retention ended)."""
    states = TableStates(_table_with_outboxes(500), lambda topic: None)
    for n in range(500):
        assert states.load(f"PK{n}") is not None
        assert states.held == 1
    states.save("PK499", None, Step(STATE._replace(order_no=OrderId("PK499"))))
    assert states.held == 0


def test_a_save_after_other_loads_keeps_the_orders_in_doubt_outbox() -> None:
    table = _table_with_outboxes(3)
    states = TableStates(table, lambda topic: 1)  # offsets 1 and 2 not committed yet: in doubt
    states.load("PK2")
    states.load("PK0")
    states.save("PK2", None, Step(STATE._replace(order_no=OrderId("PK2"))))
    assert [e.offset for e in decode_stored(table[b"PK2"]).outbox] == [2]
    states.load("PK0")
    states.save("PK0", None, Step(STATE._replace(order_no=OrderId("PK0"))))
    assert decode_stored(table[b"PK0"]).outbox == (), "offset 0 is committed: delivered, dropped"
