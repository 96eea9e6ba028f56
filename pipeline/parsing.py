"""Raw message bytes -> typed documents. The fast validator of the wire contract.

Accepts exactly what `schemas/*.schema.json` accept (tests/unit/
test_parser_agrees_with_schema.py proves it on generated messages), without a
generic schema engine per message. Every rejection is an `InvalidRecord` with a
readable reason naming the field; reasons never quote personal data.
"""

from __future__ import annotations

import re
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from pipeline.errors import InvalidRecord
from pipeline.money import json_type, parse_money
from pipeline.patterns import APP_TIME_PATTERN, GCODE_PATTERN
from pipeline.records import AppType, Item, Order, OrderId, Payment, Waybill
from pipeline.timeconv import app_time_ms

_TIME_MATCH = re.compile(APP_TIME_PATTERN).fullmatch  # ECMA `$`: no trailing newline
_GCODE_MATCH = re.compile(GCODE_PATTERN).fullmatch
_APP_TYPES: dict[object, AppType] = {1: 1, 2: 2, 3: 3, "1": 1, "2": 2, "3": 3}
_MAX_QTY = 1_000_000
_CURRENCY_CNY = "142"

Obj = dict[str, Any]


def load_object(raw: bytes) -> Obj:
    """Decode one message into a JSON object or raise InvalidRecord."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not valid JSON ({_short(str(exc))})") from None
    if type(obj) is not dict:
        raise InvalidRecord(f"message must be a JSON object, not {json_type(obj)}")
    return obj


def _checked_order(obj: Obj) -> Order:
    app_type, app_time, ms = _common(obj)
    return Order(
        guid=_guid(obj),
        app_type=app_type,
        app_time=app_time,
        app_time_ms=ms,
        order_no=_order_no(obj),
        ebp_code=_ebp_code(obj),
        ebc_code=_text(obj, "ebcCode"),
        goods_value=parse_money(_required(obj, "goodsValue"), "goodsValue"),
        freight=parse_money(_required(obj, "freight"), "freight"),
        discount=parse_money(_required(obj, "discount"), "discount"),
        tax_total=parse_money(_required(obj, "taxTotal"), "taxTotal"),
        actural_paid=parse_money(_required(obj, "acturalPaid"), "acturalPaid"),
        currency=_currency(obj),
        buyer_reg_no=_text(obj, "buyerRegNo"),
        buyer_name=_text(obj, "buyerName"),
        buyer_id_type=_text(obj, "buyerIdType"),
        buyer_id_number=_text(obj, "buyerIdNumber"),
        buyer_telephone=_text(obj, "buyerTelephone"),
        pay_code=_optional_text(obj, "payCode"),
        pay_transaction_id=_optional_text(obj, "payTransactionId"),
        consignee=_text(obj, "consignee"),
        consignee_telephone=_text(obj, "consigneeTelephone"),
        consignee_address=_text(obj, "consigneeAddress"),
        items=_items(obj),
    )


def _checked_payment(obj: Obj) -> Payment:
    app_type, app_time, ms = _common(obj)
    return Payment(
        guid=_guid(obj),
        app_type=app_type,
        app_time=app_time,
        app_time_ms=ms,
        order_no=_order_no(obj),
        pay_code=_text(obj, "payCode"),
        pay_transaction_id=_text(obj, "payTransactionId"),
        ebp_code=_ebp_code(obj),
        payer_id_type=_text(obj, "payerIdType"),
        payer_id_number=_text(obj, "payerIdNumber"),
        payer_name=_text(obj, "payerName"),
        amount_paid=parse_money(_required(obj, "amountPaid"), "amountPaid"),
        currency=_currency(obj),
        pay_time=_time(obj, "payTime"),
    )


def _checked_waybill(obj: Obj) -> Waybill:
    app_type, app_time, ms = _common(obj)
    return Waybill(
        guid=_guid(obj),
        app_type=app_type,
        app_time=app_time,
        app_time_ms=ms,
        order_no=_order_no(obj),
        logistics_code=_text(obj, "logisticsCode"),
        logistics_no=_text(obj, "logisticsNo"),
        freight=parse_money(_required(obj, "freight"), "freight"),
        insured_fee=parse_money(_required(obj, "insuredFee"), "insuredFee"),
        currency=_currency(obj),
        weight=_number(obj, "weight", "weight", exclusive_zero=False),
        pack_no=_integer(obj, "packNo", "packNo"),
        consignee=_text(obj, "consignee"),
        consignee_telephone=_text(obj, "consigneeTelephone"),
        consignee_address=_text(obj, "consigneeAddress"),
    )


# The fast path. Every parser first tries a straight-line check of the common case (all
# fields present with the right types) using C-level helpers (itemgetter, map, set); on
# any doubt it falls back to the field-by-field `_checked_*` parser, which either
# returns the same record or raises the precise InvalidRecord. So the fast path can
# only be faster, never more lenient: it accepts a subset of what the checked path does.
_STR = {str}
_ORDER_TEXT = itemgetter(
    "guid",
    "orderNo",
    "ebpCode",
    "ebcCode",
    "currency",
    "buyerRegNo",
    "buyerName",
    "buyerIdType",
    "buyerIdNumber",
    "buyerTelephone",
    "consignee",
    "consigneeTelephone",
    "consigneeAddress",
    "appTime",
)
_ORDER_MONEY = itemgetter("goodsValue", "freight", "discount", "taxTotal", "acturalPaid")
_PAYMENT_TEXT = itemgetter(
    "guid",
    "orderNo",
    "ebpCode",
    "payCode",
    "payTransactionId",
    "payerIdType",
    "payerIdNumber",
    "payerName",
    "currency",
    "appTime",
    "payTime",
)
_WAYBILL_TEXT = itemgetter(
    "guid",
    "orderNo",
    "logisticsCode",
    "logisticsNo",
    "currency",
    "consignee",
    "consigneeTelephone",
    "consigneeAddress",
    "appTime",
)
_ITEM = itemgetter("gnum", "itemName", "gcode", "qty", "price", "totalPrice")


class _Doubt(Exception):
    """The fast path is unsure: use the checked path."""


def _texts_ok(values: tuple[Any, ...]) -> bool:
    return set(map(type, values)) == _STR and "" not in values


def _app_type(obj: Obj) -> AppType:
    raw = obj["appType"]
    if type(raw) is bool:
        raise _Doubt
    return _APP_TYPES[raw]


def _common_ok(guid: str, order_no: str, currency: str, app_time: str) -> bool:
    return len(guid) == 36 and len(order_no) <= 60 and currency == _CURRENCY_CNY and _TIME_MATCH(app_time) is not None


def _opt(obj: Obj, key: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise _Doubt


def _fast_items(obj: Obj) -> tuple[Item, ...]:
    entries = obj["items"]
    if type(entries) is not list or not entries:
        raise _Doubt
    items = []
    for entry in entries:
        gnum, name, gcode, qty, price, total = _ITEM(entry)
        if type(gnum) is not int or gnum < 1 or type(name) is not str or not name or type(gcode) is not str:
            raise _Doubt
        if _GCODE_MATCH(gcode) is None or type(qty) not in (int, float) or not 0 < qty <= _MAX_QTY:
            raise _Doubt
        price_fen, total_fen = parse_money(price, ""), parse_money(total, "")
        row = Item(
            gnum,
            _opt(entry, "itemNo"),
            name,
            gcode,
            Decimal(qty) if type(qty) is int else Decimal(repr(qty)),
            _opt(entry, "unit"),
            price_fen,
            total_fen,
            _opt(entry, "country"),
        )
        items.append(row)
    return tuple(items)


def parse_order(raw: bytes) -> Order:
    """Parse a CEB311 order."""
    obj = load_object(raw)
    try:
        texts = _ORDER_TEXT(obj)
        guid, order_no, ebp, ebc, cur, reg, name, id_type, id_no, tel, cons, cons_tel, cons_addr, app_time = texts
        if not _texts_ok(texts) or not _common_ok(guid, order_no, cur, app_time) or len(ebp) != 10:
            raise _Doubt
        goods, freight, discount, tax, paid = map(parse_money, _ORDER_MONEY(obj), _MONEY_FIELDS)
        return Order(
            guid,
            _app_type(obj),
            app_time,
            app_time_ms(app_time),
            OrderId(order_no),
            ebp,
            ebc,
            goods,
            freight,
            discount,
            tax,
            paid,
            cur,
            reg,
            name,
            id_type,
            id_no,
            tel,
            _opt(obj, "payCode"),
            _opt(obj, "payTransactionId"),
            cons,
            cons_tel,
            cons_addr,
            _fast_items(obj),
        )
    except (_Doubt, KeyError, TypeError, InvalidRecord):
        return _checked_order(obj)


_MONEY_FIELDS = ("goodsValue", "freight", "discount", "taxTotal", "acturalPaid")


def parse_payment(raw: bytes) -> Payment:
    """Parse a CEB411 payment."""
    obj = load_object(raw)
    try:
        texts = _PAYMENT_TEXT(obj)
        guid, order_no, ebp, pay_code, pay_tx, id_type, id_no, name, cur, app_time, pay_time = texts
        if not _texts_ok(texts) or not _common_ok(guid, order_no, cur, app_time) or len(ebp) != 10:
            raise _Doubt
        if _TIME_MATCH(pay_time) is None:
            raise _Doubt
        amount = parse_money(obj["amountPaid"], "amountPaid")
        return Payment(
            guid,
            _app_type(obj),
            app_time,
            app_time_ms(app_time),
            OrderId(order_no),
            pay_code,
            pay_tx,
            ebp,
            id_type,
            id_no,
            name,
            amount,
            cur,
            pay_time,
        )
    except (_Doubt, KeyError, TypeError, InvalidRecord):
        return _checked_payment(obj)


def parse_waybill(raw: bytes) -> Waybill:
    """Parse a CEB511 waybill."""
    obj = load_object(raw)
    try:
        texts = _WAYBILL_TEXT(obj)
        guid, order_no, log_code, log_no, cur, cons, cons_tel, cons_addr, app_time = texts
        if not _texts_ok(texts) or not _common_ok(guid, order_no, cur, app_time):
            raise _Doubt
        weight, pack_no = obj["weight"], obj["packNo"]
        if type(pack_no) is not int or pack_no < 1 or type(weight) not in (int, float) or not 0 <= weight <= _MAX_QTY:
            raise _Doubt
        return Waybill(
            guid,
            _app_type(obj),
            app_time,
            app_time_ms(app_time),
            OrderId(order_no),
            log_code,
            log_no,
            parse_money(obj["freight"], "freight"),
            parse_money(obj["insuredFee"], "insuredFee"),
            cur,
            Decimal(weight) if type(weight) is int else Decimal(repr(weight)),
            pack_no,
            cons,
            cons_tel,
            cons_addr,
        )
    except (_Doubt, KeyError, TypeError, InvalidRecord):
        return _checked_waybill(obj)


# The checked path: field by field, with a precise reason for the first problem.


def _common(obj: Obj) -> tuple[AppType, str, int]:
    raw_type = _required(obj, "appType")
    app_type = _APP_TYPES.get(raw_type) if type(raw_type) in (int, float, str) else None
    if app_type is None:
        raise InvalidRecord("must be 1 (new), 2 (modify) or 3 (delete)", "appType")
    app_time = _time(obj, "appTime")
    return app_type, app_time, app_time_ms(app_time)


def _required(obj: Obj, key: str, path: str | None = None) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise InvalidRecord("required field is missing", path or key) from None


def _text(obj: Obj, key: str, path: str | None = None) -> str:
    value = _required(obj, key, path)
    if type(value) is not str:
        raise InvalidRecord(f"must be a string, not {json_type(value)}", path or key)
    if not value:
        raise InvalidRecord("must not be empty", path or key)
    return value


def _optional_text(obj: Obj, key: str, path: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise InvalidRecord(f"must be a string or null, not {json_type(value)}", path or key)


def _guid(obj: Obj) -> str:
    guid = _text(obj, "guid")
    if len(guid) != 36:
        raise InvalidRecord("must be exactly 36 characters", "guid")
    return guid


def _order_no(obj: Obj) -> OrderId:
    order_no = _text(obj, "orderNo")
    if len(order_no) > 60:
        raise InvalidRecord("must be at most 60 characters", "orderNo")
    return OrderId(order_no)


def _ebp_code(obj: Obj) -> str:
    code = _text(obj, "ebpCode")
    if len(code) != 10:
        raise InvalidRecord("must be exactly 10 characters", "ebpCode")
    return code


def _currency(obj: Obj) -> str:
    currency = _text(obj, "currency")
    if currency != _CURRENCY_CNY:
        raise InvalidRecord('must be "142" (CNY): amounts are compared in CNY', "currency")
    return currency


def _time(obj: Obj, key: str) -> str:
    value = _text(obj, key)
    if not _TIME_MATCH(value):
        raise InvalidRecord("must be a real time as YYYYMMDDhhmmss (CST)", key)
    return value


def _number(obj: Obj, key: str, path: str, *, exclusive_zero: bool) -> Decimal:
    value = _required(obj, key, path)
    if type(value) is int:
        number = Decimal(value)
    elif type(value) is float:
        number = Decimal(repr(value))
    else:
        raise InvalidRecord(f"must be a number, not {json_type(value)}", path)
    if number < 0 or (exclusive_zero and number == 0) or number > _MAX_QTY:
        raise InvalidRecord(f"must be {'>' if exclusive_zero else '>='} 0 and <= {_MAX_QTY}", path)
    return number


def _integer(obj: Obj, key: str, path: str) -> int:
    value = _required(obj, key, path)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise InvalidRecord(f"must be an integer, not {json_type(value)}", path)
    if value < 1:
        raise InvalidRecord("must be >= 1", path)
    return value


def _items(obj: Obj) -> tuple[Item, ...]:
    items = _required(obj, "items")
    if type(items) is not list:
        raise InvalidRecord(f"must be an array, not {json_type(items)}", "items")
    if not items:
        raise InvalidRecord("must hold at least one item", "items")
    return tuple(_item(entry, f"items[{i}]") for i, entry in enumerate(items))


def _item(entry: object, path: str) -> Item:
    if type(entry) is not dict:
        raise InvalidRecord(f"must be an object, not {json_type(entry)}", path)
    gcode = _text(entry, "gcode", f"{path}.gcode")
    if not _GCODE_MATCH(gcode):
        raise InvalidRecord("must be a 10-digit HS code", f"{path}.gcode")
    return Item(
        gnum=_integer(entry, "gnum", f"{path}.gnum"),
        item_no=_optional_text(entry, "itemNo", f"{path}.itemNo"),
        item_name=_text(entry, "itemName", f"{path}.itemName"),
        gcode=gcode,
        qty=_number(entry, "qty", f"{path}.qty", exclusive_zero=True),
        unit=_optional_text(entry, "unit", f"{path}.unit"),
        price=parse_money(_required(entry, "price", f"{path}.price"), f"{path}.price"),
        total_price=parse_money(_required(entry, "totalPrice", f"{path}.totalPrice"), f"{path}.totalPrice"),
        country=_optional_text(entry, "country", f"{path}.country"),
    )


def _short(message: str) -> str:
    return message if len(message) <= 120 else message[:117] + "..."
