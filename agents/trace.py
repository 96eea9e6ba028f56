"""CLEARANCE_TRACE_FILE: one line per applied document and per event-time jump, for debugging.

`wall_ms pid apply|advance topic[partition]@offset orderNo time_ms event_ms current_event`:
what the join applied, under which Faust event (whose partition Faust's RocksDB store
uses for every table read and write). No personal data: order numbers and offsets only.
This trace showed issue 10's cause (docs/DESIGN-worker.md, "Merge order").
"""

from __future__ import annotations

import os

from agents.faust_internals import current_position
from agents.join import JoinProcessor
from agents.sender import Msg
from clearance.clock import wall_ms


def maybe_trace(joiner: JoinProcessor) -> None:
    path = os.environ.get("CLEARANCE_TRACE_FILE")
    if not path:
        return
    handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    pid = os.getpid()  # several processes may share the file (clearance worker --processes N)

    def trace(what: str, msg: Msg, order_no: str, time_ms: int, event_ms: int) -> None:
        where = current_position()
        at = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        handle.write(f"{wall_ms()} {pid} {what} {at} {order_no} {time_ms} {event_ms} {where}\n")

    joiner.trace = trace
