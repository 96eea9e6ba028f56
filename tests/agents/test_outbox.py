"""The worker's join-table value (agents/outbox.py): core state + outbox, without a broker."""

from __future__ import annotations

import orjson
import pytest

from agents.outbox import OutboxEntry, Stored, decode_stored, encode_stored
from agents.sender import Emit
from pipeline.codec import encode_state
from pipeline.errors import StateCodecError
from pipeline.join import JoinState
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
