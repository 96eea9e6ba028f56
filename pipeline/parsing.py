"""Raw message bytes -> typed documents. The fast validator of the wire contract.

msgspec decodes each message into its Struct (`pipeline.documents`), checking every
type, length, range, enum and pattern in C; this module then converts the Struct into
the record (money to integer fen, appTime to epoch milliseconds) and checks the few
rules a Struct cannot state. It accepts exactly what `schemas/*.schema.json` accept
(tests/pipeline/test_parser_agrees_with_schema.py proves it on generated messages).

Every rejection is an `InvalidRecord` whose reason names the field (msgspec's error
path, `$.items[0].price`, becomes `items[0].price`) in our own words: msgspec's message
is read for its kind only and never passed on, because some of its messages quote the
value (`Invalid enum value '...'`), and reasons never quote personal data.

One known difference from a reading of the schema that keeps the last of duplicate keys
(RFC 8259 leaves duplicates undefined): msgspec checks every occurrence of a known field,
so `{"payerName": 5, "payerName": "x"}` is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar, cast

import msgspec

from pipeline.documents import (
    Money,
    OrderDoc,
    OrderDocExact,
    PaymentDoc,
    PaymentDocExact,
    WaybillDoc,
    WaybillDocExact,
)
from pipeline.errors import InvalidRecord
from pipeline.money import KNOWN_FEN, parse_money, remember_fen
from pipeline.patterns import APP_TIME_PATTERN
from pipeline.records import AppType, Item, Order, Payment, TupleNew, Waybill
from pipeline.timeconv import app_time_ms

_ORDER: Final = msgspec.json.Decoder(OrderDoc)
_PAYMENT: Final = msgspec.json.Decoder(PaymentDoc)
_WAYBILL: Final = msgspec.json.Decoder(WaybillDoc)
_ORDER_EXACT: Final = msgspec.json.Decoder(OrderDocExact)
_PAYMENT_EXACT: Final = msgspec.json.Decoder(PaymentDocExact)
_WAYBILL_EXACT: Final = msgspec.json.Decoder(WaybillDocExact)
_APP_TYPES: Final[dict[object, AppType]] = {1: 1, 2: 2, 3: 3, "1": 1, "2": 2, "3": 3}  # 2.0 == 2: same key
_DecodeFailure: Final = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
_known_fen: Final = KNOWN_FEN.get
_Doc = TypeVar("_Doc", OrderDoc, PaymentDoc, WaybillDoc)
_new: Final[TupleNew] = tuple.__new__
_fields: Final = msgspec.structs.astuple  # a Struct's fields in order, as a tuple


def parse_order(raw: bytes) -> Order:
    """Parse a CEB311 order; InvalidRecord names the first field found wrong."""
    try:
        doc: OrderDoc = _ORDER_EXACT.decode(raw)  # every byte checked (pipeline.documents)
    except _DecodeFailure:
        doc = _decode(_ORDER, raw)
    # Every field at once, in OrderDoc's order: one C call, not an attribute lookup per field.
    (
        guid,
        app_type,
        app_time,
        order_no,
        ebp_code,
        ebc_code,
        goods_value,
        freight_value,
        discount_value,
        tax_value,
        paid_value,
        currency,
        buyer_reg_no,
        buyer_name,
        buyer_id_type,
        buyer_id_number,
        buyer_telephone,
        consignee,
        consignee_telephone,
        consignee_address,
        entries,
        pay_code,
        pay_transaction_id,
    ) = _fields(doc)
    lines: list[tuple[Any, ...]] = [_fields(entry) for entry in entries]
    money: list[Money] = [goods_value, freight_value, discount_value, tax_value, paid_value]
    for line in lines:
        money.append(line[4])  # price
        money.append(line[5])  # totalPrice
    known: list[int | None] = [_known_fen(value) for value in money]  # None where not seen yet
    # Every element an int unless None is among them (then the fen are filled in).
    fens = (
        _fill_fens(money, known, lambda: _order_money_fields(len(lines))) if None in known else cast(list[int], known)
    )
    app_time_ms = _KNOWN_TIMES.get(app_time)
    # tuple.__new__ with every field in order: Order's generated __new__ is a Python function.
    return _new(
        Order,
        (
            guid,
            _app_type(app_type),
            app_time,
            _time_ms(app_time, "appTime") if app_time_ms is None else app_time_ms,
            order_no,
            ebp_code,
            ebc_code,
            fens[0],
            fens[1],
            fens[2],
            fens[3],
            fens[4],
            currency,
            buyer_reg_no,
            buyer_name,
            buyer_id_type,
            buyer_id_number,
            buyer_telephone,
            pay_code,
            pay_transaction_id,
            consignee,
            consignee_telephone,
            consignee_address,
            _items(lines, fens),
            "order",
        ),
    )


def parse_payment(raw: bytes) -> Payment:
    """Parse a CEB411 payment; InvalidRecord names the first field found wrong."""
    try:
        doc: PaymentDoc = _PAYMENT_EXACT.decode(raw)  # every byte checked (pipeline.documents)
    except _DecodeFailure:
        doc = _decode(_PAYMENT, raw)
    (
        guid,
        app_type,
        app_time,
        order_no,
        ebp_code,
        pay_code,
        pay_transaction_id,
        payer_id_type,
        payer_id_number,
        payer_name,
        amount_paid,
        currency,
        pay_time,
    ) = _fields(doc)  # in PaymentDoc's order
    amount = _known_fen(amount_paid)
    if amount is None:
        amount = _fill_fens([amount_paid], [None], _payment_money)[0]
    _time_ms(pay_time, "payTime")
    return _new(
        Payment,
        (
            guid,
            _app_type(app_type),
            app_time,
            _time_ms(app_time, "appTime"),
            order_no,
            pay_code,
            pay_transaction_id,
            ebp_code,
            payer_id_type,
            payer_id_number,
            payer_name,
            amount,
            currency,
            pay_time,
            "payment",
        ),
    )


def parse_waybill(raw: bytes) -> Waybill:
    """Parse a CEB511 waybill; InvalidRecord names the first field found wrong."""
    try:
        doc: WaybillDoc = _WAYBILL_EXACT.decode(raw)  # every byte checked (pipeline.documents)
    except _DecodeFailure:
        doc = _decode(_WAYBILL, raw)
    (
        guid,
        app_type,
        app_time,
        order_no,
        logistics_code,
        logistics_no,
        freight_value,
        insured_fee,
        currency,
        weight,
        pack_no,
        consignee,
        consignee_telephone,
        consignee_address,
    ) = _fields(doc)  # in WaybillDoc's order
    money: list[Money] = [freight_value, insured_fee]
    known: list[int | None] = [_known_fen(freight_value), _known_fen(insured_fee)]  # None where not seen yet
    fens = _fill_fens(money, known, _waybill_money) if None in known else cast(list[int], known)
    return _new(
        Waybill,
        (
            guid,
            _app_type(app_type),
            app_time,
            _time_ms(app_time, "appTime"),
            order_no,
            logistics_code,
            logistics_no,
            fens[0],
            fens[1],
            currency,
            Decimal(weight) if type(weight) is int else Decimal(repr(weight)),
            _count(pack_no, "packNo"),
            consignee,
            consignee_telephone,
            consignee_address,
            "waybill",
        ),
    )


def _decode(decoder: msgspec.json.Decoder[_Doc], raw: bytes) -> _Doc:
    """Decode with unknown fields allowed, then check the UTF-8 msgspec skipped; InvalidRecord if wrong."""
    try:
        doc = decoder.decode(raw)
        _check_utf8(raw)
    except _DecodeFailure as exc:
        raise _invalid(exc) from None
    return doc


# What the Structs leave to the parser (see pipeline.documents): UTF-8, the patterns,
# integral floats, two decimals.


def _check_utf8(raw: bytes) -> None:
    """UnicodeDecodeError unless every byte is UTF-8: msgspec skips unknown fields undecoded."""
    if not raw.isascii():
        raw.decode()


_TIME_MATCH: Final = re.compile(APP_TIME_PATTERN.removesuffix("$") + r"\Z").match  # ECMA `$`: the very end
# Valid times already seen -> epoch ms: a second's documents share their appTime. Bounded.
_KNOWN_TIMES: Final[dict[str, int]] = {}
_KNOWN_LIMIT = 1 << 13  # distinct seconds: over 2 hours of trace


def forget() -> None:
    """Empty this module's memo cache, the map of known times (pipeline/memo.py)."""
    _KNOWN_TIMES.clear()


def _time_ms(text: str, field: str) -> int:
    ms = _KNOWN_TIMES.get(text)
    if ms is not None:
        return ms
    if _TIME_MATCH(text) is None:
        raise InvalidRecord(_TIME_RULE, field)
    if len(_KNOWN_TIMES) >= _KNOWN_LIMIT:
        _KNOWN_TIMES.clear()
    ms = _KNOWN_TIMES[text] = app_time_ms(text)
    return ms


def _fill_fens(values: list[Money], known: list[int | None], fields: Callable[[], tuple[str, ...]]) -> list[int]:
    """The fen of every value: `known`'s, and the values not known yet (None) checked and remembered.

    InvalidRecord names the first field found wrong.
    """
    try:
        return [remember_fen(values[at]) if fen is None else fen for at, fen in enumerate(known)]
    except InvalidRecord:
        for value, field in zip(values, fields(), strict=True):
            parse_money(value, field)  # raises with the field's name
        raise


def _waybill_money() -> tuple[str, ...]:
    return ("freight", "insuredFee")


def _payment_money() -> tuple[str, ...]:
    return ("amountPaid",)


def _order_money_fields(count: int) -> tuple[str, ...]:
    items = [(f"items[{i}].price", f"items[{i}].totalPrice") for i in range(count)]
    return ("goodsValue", "freight", "discount", "taxTotal", "acturalPaid", *(f for pair in items for f in pair))


def _app_type(value: int | float | str) -> AppType:
    app_type = _APP_TYPES.get(value)
    if app_type is None:  # a float other than 1.0, 2.0, 3.0
        raise InvalidRecord(_APP_TYPE_RULE, "appType")
    return app_type


def _count(value: int | float, field: str) -> int:
    if isinstance(value, int):
        return value
    if not value.is_integer():
        raise InvalidRecord("must be an integer, not a fraction", field)
    return int(value)


def _items(lines: list[tuple[Any, ...]], fens: list[int]) -> tuple[Item, ...]:
    """The order lines from each ItemDoc's fields (in order).

    `fens` holds each line's price and totalPrice from index 5 on.
    """
    items: list[Item] = []
    at = 5
    for gnum, item_name, gcode, qty, _, _, item_no, unit, country in lines:
        if type(gnum) is not int or type(qty) is not int or not (gcode.isascii() and gcode.isdigit()):
            gnum, qty = _unusual_item(gnum, gcode, qty, len(items))
        # tuple.__new__: the NamedTuple's own __new__ is a Python function (0.2 us per call).
        items.append(_new(Item, (gnum, item_no, item_name, gcode, qty, unit, fens[at], fens[at + 1], country)))
        at += 2
    return tuple(items)


def _unusual_item(gnum: int | float, gcode: str, qty: int | float, index: int) -> tuple[int, int | Decimal]:
    """An integral float gnum, a fractional qty (a Decimal of the sender's text), or a bad HS code."""
    if not (gcode.isascii() and gcode.isdigit()):
        raise InvalidRecord(_CONSTRAINT["gcode"], f"items[{index}].gcode")
    return _count(gnum, f"items[{index}].gnum"), qty if type(qty) is int else Decimal(repr(qty))


# msgspec's errors in our words. A ValidationError reads "<what> - at `$.<path>`" (no path:
# the message itself); only <what>'s kind is used, never its text.

_APP_TYPE_RULE = "must be 1 (new), 2 (modify) or 3 (delete)"
_MONEY_RANGE = "money out of range 0..999999999999.99"
_TIME_RULE = "must be a real time as YYYYMMDDhhmmss (CST)"
_QTY_RULE = "must be > 0 and <= 1000000"
_TEXT = "a string"

# Per field (the last name of the path): what type it must be, and what its constraint says.
_EXPECTED: dict[str, str] = {
    **dict.fromkeys(("itemNo", "unit", "country", "payCode", "payTransactionId"), "a string or null"),
    **dict.fromkeys(("qty", "weight"), "a number"),
    **dict.fromkeys(("gnum", "packNo"), "an integer"),
    "items": "an array",
    "items[]": "an object",
}
_MONEY_FIELDS = frozenset(
    {"goodsValue", "freight", "discount", "taxTotal", "acturalPaid", "amountPaid", "insuredFee", "price", "totalPrice"}
)
_CONSTRAINT: dict[str, str] = {
    "guid": "must be exactly 36 characters",
    "ebpCode": "must be exactly 10 characters",
    "orderNo": "must be at most 60 characters",
    "appType": _APP_TYPE_RULE,
    "appTime": _TIME_RULE,
    "payTime": _TIME_RULE,
    "currency": 'must be "142" (CNY): amounts are compared in CNY',
    "gcode": "must be a 10-digit HS code",
    "qty": _QTY_RULE,
    "weight": "must be >= 0 and <= 1000000",
    "gnum": "must be >= 1",
    "packNo": "must be >= 1",
    "items": "must hold at least one item",
}
_JSON_TYPES = {"int": "number", "float": "number", "str": "string", "bool": "boolean"}
_MISSING = "Object missing required field `"
_GOT = "`, got `"


def _invalid(exc: Exception) -> InvalidRecord:
    """The InvalidRecord for a msgspec (or UTF-8) failure."""
    if isinstance(exc, UnicodeDecodeError):
        return InvalidRecord("not valid JSON (not UTF-8)")
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return InvalidRecord(f"not valid JSON ({_short(message)})")
    what, at, where = message.partition(" - at `$")
    path = where.removeprefix(".").removesuffix("`") if at else ""
    if what.startswith(_MISSING):
        name = what.removeprefix(_MISSING).removesuffix("`")
        return InvalidRecord("required field is missing", f"{path}.{name}" if path else name)
    got = what.rpartition(_GOT)[2].removesuffix("`") if _GOT in what else None
    if not path:
        return InvalidRecord(f"message must be a JSON object, not {_JSON_TYPES.get(got or '', got)}")
    leaf = path.rpartition(".")[2]
    leaf = "items[]" if leaf.endswith("]") else leaf
    return InvalidRecord(_reason(leaf, what, got), path)


def _reason(leaf: str, what: str, got: str | None) -> str:
    if leaf in _MONEY_FIELDS:
        if got is not None:
            return f"money must be a number or a decimal string, not {_JSON_TYPES.get(got, got)}"
        return _MONEY_RANGE
    if got is not None:
        if leaf == "appType":
            return _APP_TYPE_RULE
        return f"must be {_EXPECTED.get(leaf, _TEXT)}, not {_JSON_TYPES.get(got, got)}"
    if what == "Expected `str` of length >= 1":
        return "must not be empty"
    return _CONSTRAINT.get(leaf, "has an invalid value")


def _short(message: str) -> str:
    return message if len(message) <= 120 else message[:117] + "..."
