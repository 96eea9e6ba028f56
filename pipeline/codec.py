"""Bytes at the edges: join and quota state, candidates, declarations, dead letters.

State encodings are compact orjson arrays led by a format version. Decisions on
compatibility: a reader accepts only versions it knows and raises StateCodecError
otherwise (never guesses); bump `_STATE_V` when a field changes meaning.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Final, Protocol

import msgspec
import orjson

from pipeline.documents import PublishedDeclaration
from pipeline.errors import StateCodecError
from pipeline.join import Candidate, JoinState
from pipeline.money import format_fen
from pipeline.quota import BuyerQuota
from pipeline.records import RETURN_STATUS, Declaration, Order, OrderId, Payment, TupleNew, Waybill
from pipeline.timeconv import iso_cst, iso_utc_ms

_STATE_V = 1
_QUOTA_V = 1


def encode_state(state: JoinState) -> bytes:
    """JoinState -> bytes."""
    return orjson.dumps(
        [
            _STATE_V,
            state.order_no,
            state.deadline_ms,
            state.decided,
            state.guids,
            _order_row(state.order) if state.order else None,
            _payment_row(state.payment) if state.payment else None,
            _waybill_row(state.waybill) if state.waybill else None,
        ]
    )


def decode_state(raw: bytes) -> JoinState:
    """Bytes -> JoinState; StateCodecError when the bytes are not a state we wrote.

    msgspec decodes the rows straight into the records (a row is a record without its
    `kind`, which takes its default) and checks every field's type in C: 1.3x faster than
    orjson and a constructor call per record, on a state the worker reads back for most
    documents it applies.
    """
    try:
        v, order_no, deadline, decided, guids, order, payment, waybill = _STATE_ROW.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise StateCodecError(f"corrupt join state: {exc}") from None
    if v != _STATE_V:
        raise StateCodecError(f"unknown join state version {v!r}")
    # tuple.__new__ with every field in order: JoinState's own __new__ is a Python function.
    return _new(JoinState, (order_no, deadline, order, payment, waybill, guids, decided))


# A row is the record's fields in declaration order, `kind` (always the last) left out; an
# order's items are rows too, their qty as text.
def _order_row(o: Order) -> list[Any]:
    row: list[Any] = list(o)
    row.pop()  # kind
    row[-1] = [[g, no, name, code, str(q), u, p, t, c] for g, no, name, code, q, u, p, t, c in o.items]
    return row


def _payment_row(p: Payment) -> list[Any]:
    row: list[Any] = list(p)
    row.pop()  # kind
    return row


def _waybill_row(w: Waybill) -> list[Any]:
    row: list[Any] = list(w)
    row.pop()  # kind
    row[_WEIGHT] = str(w.weight)
    return row


_new: Final[TupleNew] = tuple.__new__
_WEIGHT: Final = Waybill._fields.index("weight")
if any(cls._fields[-1] != "kind" for cls in (Order, Payment, Waybill)) or Order._fields[-2] != "items":
    raise AssertionError("a row leaves out the record's last field, kind, and an order's items come before it")
_StateRow = tuple[int, OrderId, int, str | None, tuple[str, ...], Order | None, Payment | None, Waybill | None]
_STATE_ROW: msgspec.json.Decoder[_StateRow] = msgspec.json.Decoder(_StateRow)


def encode_quota(state: BuyerQuota) -> bytes:
    """BuyerQuota -> bytes."""
    return orjson.dumps([_QUOTA_V, list(state.used.items()), [[d, y, e] for d, (y, e) in state.verdicts.items()]])


def decode_quota(raw: bytes) -> BuyerQuota:
    """Bytes -> BuyerQuota; StateCodecError when corrupt."""
    try:
        v, used, verdicts = orjson.loads(raw)
        if v != _QUOTA_V:
            raise StateCodecError(f"unknown quota state version {v!r}")
        return BuyerQuota({int(y): int(f) for y, f in used}, {d: (int(y), bool(e)) for d, y, e in verdicts})
    except StateCodecError:
        raise
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise StateCodecError(f"corrupt quota state: {exc}") from exc


def declaration_dict(d: Declaration) -> dict[str, Any]:
    """The published form of a declaration (schemas/declaration.schema.json).

    `receivedAt` is present only when known (omitted, never null, otherwise).
    """
    out: dict[str, Any] = {
        "declarationId": d.declaration_id,
        "orderNo": d.order_no,
        "ebpCode": d.ebp_code,
        "ebcCode": d.ebc_code,
        "payCode": d.pay_code,
        "payTransactionId": d.pay_transaction_id,
        "logisticsCode": d.logistics_code,
        "logisticsNo": d.logistics_no,
        "buyerIdNumber": d.buyer_id_number,
        "status": d.status,
        "returnStatus": d.return_status,
        "reasons": list(d.reasons),
        "dutiableValue": None if d.dutiable_value is None else format_fen(d.dutiable_value),
        "tax": None if d.tax is None else format_fen(d.tax),
        "inspection": d.inspection,
        "documents": d.documents,
        "eventTime": iso_cst(d.event_time_ms),
        "decidedAt": iso_utc_ms(d.decided_at_ms),
    }
    if d.received_at_ms is not None:
        out["receivedAt"] = iso_utc_ms(d.received_at_ms)
    return out


_encode_published: Final = msgspec.json.Encoder().encode


def encode_declaration(d: Declaration) -> bytes:
    """Declaration -> the JSON bytes published on the matched or flagged topic.

    Byte for byte `orjson.dumps(declaration_dict(d))` (tests/pipeline/test_codec.py), through a
    msgspec Struct: 1.2 us against orjson's 3.8 for the dict alone, and no dict to build
    (issue 12: msgspec measured the faster encoder for declarations).
    """
    dutiable, tax, received = d.dutiable_value, d.tax, d.received_at_ms
    return _encode_published(
        PublishedDeclaration(
            d.declaration_id,
            d.order_no,
            d.ebp_code,
            d.ebc_code,
            d.pay_code,
            d.pay_transaction_id,
            d.logistics_code,
            d.logistics_no,
            d.buyer_id_number,
            d.status,
            RETURN_STATUS[d.status],
            d.reasons,
            None if dutiable is None else format_fen(dutiable),
            None if tax is None else format_fen(tax),
            d.inspection,
            d.documents,  # type: ignore[arg-type]  # dict[DocKind, ...] is a dict[str, ...]
            iso_cst(d.event_time_ms),
            iso_utc_ms(d.decided_at_ms),
            None if received is None else iso_utc_ms(received),
        )
    )


def encode_candidate(c: Candidate) -> bytes:
    """Candidate -> bytes for the repartition topic (keyed by buyer)."""
    d = c.declaration
    return orjson.dumps(
        [
            c.buyer_key,
            c.year,
            d.declaration_id,
            d.order_no,
            [d.ebp_code, d.ebc_code, d.pay_code, d.pay_transaction_id, d.logistics_code, d.logistics_no],
            d.buyer_id_number,
            d.status,
            d.reasons,
            d.dutiable_value,
            d.tax,
            d.inspection,
            d.documents,
            d.event_time_ms,
            d.decided_at_ms,
            d.received_at_ms,
        ]
    )


def decode_candidate(raw: bytes) -> Candidate:
    """Bytes -> Candidate; StateCodecError when corrupt.

    A candidate written before `receivedAt` existed (14 elements, no receipt time) still
    decodes, so a worker upgraded mid-stream reads what its predecessor left on the topic.
    """
    try:
        row = orjson.loads(raw)
        received = row.pop() if len(row) == 15 else None
        buyer, year, did, order_no, codes, buyer_id, status, reasons, dutiable, tax, insp, docs, ev, at = row
        ebp, ebc, pay_code, pay_tx, log_code, log_no = codes
        declaration = Declaration(
            did,
            OrderId(order_no),
            ebp,
            ebc,
            pay_code,
            pay_tx,
            log_code,
            log_no,
            buyer_id,
            status,
            tuple(reasons),
            dutiable,
            tax,
            insp,
            docs,
            ev,
            at,
            received,
        )
        return Candidate(declaration, buyer, year)
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise StateCodecError(f"corrupt candidate: {exc}") from exc


class Source(Protocol):
    """Where a message came from (the embedded runner's Origin, the worker's Msg)."""

    @property
    def topic(self) -> str:
        """The source topic (or trace file's topic)."""

    @property
    def partition(self) -> int:
        """The source partition."""

    @property
    def offset(self) -> int:
        """The message's offset (line number in a trace file)."""

    @property
    def key(self) -> bytes | None:
        """The message's key, if any."""


def dead_letter_dict(
    raw: bytes, source: Source, reason: str, field: str | None, *, internal: bool, wall_ms: int
) -> dict[str, Any]:
    """The dead-letter record (schemas/deadletter.schema.json): original bytes in base64."""
    key = source.key
    return {
        "sourceTopic": source.topic,
        "sourcePartition": source.partition,
        "sourceOffset": source.offset,
        "key": None if key is None else key.decode("utf-8", "replace"),
        "value": base64.b64encode(raw).decode("ascii"),
        "reason": reason,
        "field": field,
        "error": "INTERNAL_ERROR" if internal else "INVALID_RECORD",
        "deadLetteredAt": iso_utc_ms(wall_ms),
    }


WATERMARK_PREFIX = b'{"watermark":'


def encode_watermark(event_ms: int, source: int, *, idle: bool = False) -> bytes:
    """A join partition's event time, published on every candidates partition.

    A JSON object; candidates are JSON arrays, so the two never collide. `idle`: the
    partition has had no input for the idle time and the broker holds none for it.
    """
    body: dict[str, int | bool] = {"watermark": event_ms, "source": source}
    if idle:
        body["idle"] = True
    return orjson.dumps(body)


def decode_watermark(raw: bytes) -> tuple[int, int, bool]:
    """Bytes -> (event_ms, source partition, idle); StateCodecError when corrupt."""
    try:
        body = orjson.loads(raw)
        event_ms, source, idle = body["watermark"], body["source"], body.get("idle", False)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise StateCodecError(f"corrupt watermark: {type(exc).__name__}") from exc
    if type(event_ms) is not int or type(source) is not int or type(idle) is not bool:
        raise StateCodecError("corrupt watermark: wrong types")
    return event_ms, source, idle


def encode_watermarks(marks: Iterable[tuple[int, int, bool]]) -> bytes:
    """The event times of the join partitions a worker owns, in one record.

    `marks`: (event_ms, source, idle) each; the record is `{"watermark": [[source, event_ms,
    idle], ...]}`, one per candidates partition per publication, where a record per join
    partition made P x P records (144 at 12 partitions) every watermark interval (issue 12).
    """
    return orjson.dumps({"watermark": [[source, event_ms, idle] for event_ms, source, idle in marks]})


def decode_watermarks(raw: bytes) -> list[tuple[int, int, bool]]:
    """Bytes -> [(event_ms, source partition, idle), ...]; StateCodecError when corrupt.

    Either form: `encode_watermarks`, or one partition's `encode_watermark` (written before).
    """
    try:
        body = orjson.loads(raw)
        marks = body["watermark"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise StateCodecError(f"corrupt watermark: {type(exc).__name__}") from exc
    if type(marks) is not list:
        return [decode_watermark(raw)]
    out = []
    for mark in marks:
        if type(mark) is not list or len(mark) != 3:
            raise StateCodecError("corrupt watermark: an entry is not [source, eventTime, idle]")
        source, event_ms, idle = mark
        if type(event_ms) is not int or type(source) is not int or type(idle) is not bool:
            raise StateCodecError("corrupt watermark: wrong types")
        out.append((event_ms, source, idle))
    return out


CANDIDATES_PREFIX = b'{"candidates":[\n'
_CANDIDATES_END = b"\n]}"


def encode_candidates(values: Iterable[bytes]) -> bytes:
    """Candidates (`encode_candidate` each) bound for one candidates partition, in one record.

    `{"candidates":[` then one candidate per line, `]}` on the last: JSON, and split without
    parsing it (orjson writes no raw line break, it escapes them), so the quota stage keeps
    each candidate's bytes alone while it holds it. One record per candidates partition per
    watermark interval, where a record per candidate made each go through Faust's
    per-message path once more (issue 12).
    """
    return CANDIDATES_PREFIX + b",\n".join(values) + _CANDIDATES_END


def split_candidates(raw: bytes) -> list[bytes]:
    """`encode_candidates` bytes -> the candidates' bytes, in order.

    StateCodecError when the framing is broken (each candidate is checked when decoded).
    """
    if not raw.startswith(CANDIDATES_PREFIX) or not raw.endswith(_CANDIDATES_END):
        raise StateCodecError("corrupt candidates record: not framed as encode_candidates writes it")
    lines = raw[len(CANDIDATES_PREFIX) : -len(_CANDIDATES_END)].split(b"\n")
    values = [line[:-1] for line in lines[:-1]]
    values.append(lines[-1])
    if any(not value for value in values) or any(not line.endswith(b",") for line in lines[:-1]):
        raise StateCodecError("corrupt candidates record: an empty line or a missing separator")
    return values
