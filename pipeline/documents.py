"""The wire form of the three documents: msgspec Structs carrying the contract's constraints.

msgspec checks every type, length, range and enum below in C while it decodes, so
`pipeline.parsing` only converts (money to fen, appTime to epoch milliseconds) and checks
what a Struct does not state. Each constraint mirrors `schemas/*.schema.json`
(tests/pipeline/test_parser_agrees_with_schema.py proves the parser agrees with them).

Left to `pipeline.parsing`, each for a reason:
- the three patterns (appTime, money strings, HS codes). msgspec can check a pattern,
  but by calling Python's `re` for every value (0.3 us each, ten or more per order);
  the parser checks them against caches of the values already seen (times and prices
  repeat), with the same patterns, anchored as ECMA-262 anchors them;
- JSON Schema's `integer` and `enum` accept an integral float (`"gnum": 1.0`,
  `"appType": 2.0`); msgspec's `int` does not, so those fields also take a float;
- a money number has at most two decimals (`multipleOf: 0.01`), which needs the
  float's decimal text;
- every byte of the message is UTF-8: msgspec skips unknown fields without decoding them.

`pipeline.parsing` reads a decoded Struct's fields by position (`msgspec.structs.astuple`,
one C call): a field added, removed or moved here is changed there too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

MAX_YUAN = 999_999_999_999
MAX_QTY = 1_000_000

Text = Annotated[str, Meta(min_length=1)]
OptionalText = str | None
Guid = Annotated[str, Meta(min_length=36, max_length=36)]
OrderNo = Annotated[str, Meta(min_length=1, max_length=60)]
EbpCode = Annotated[str, Meta(min_length=10, max_length=10)]
AppTime = Annotated[str, Meta(min_length=14, max_length=14)]  # and APP_TIME_PATTERN (parser)
Currency = Literal["142"]
# 1 new, 2 modify, 3 delete, as a number or its one-digit string; a float must be one of
# 1.0, 2.0, 3.0 (checked by the parser).
AppTypeWire = Literal[1, 2, 3, "1", "2", "3"] | float
# CNY yuan: a number >= 0 (a float with at most 2 decimals) or a decimal string
# (MONEY_STRING_PATTERN), both checked by the parser; at most 999999999999.99.
Money = Annotated[int, Meta(ge=0, le=MAX_YUAN)] | Annotated[float, Meta(ge=0, le=999_999_999_999.99)] | str
# A JSON Schema integer >= 1: an int, or a float the parser checks is integral.
Count = Annotated[int, Meta(ge=1)] | Annotated[float, Meta(ge=1)]
Quantity = Annotated[int, Meta(gt=0, le=MAX_QTY)] | Annotated[float, Meta(gt=0, le=MAX_QTY)]
Weight = Annotated[int, Meta(ge=0, le=MAX_QTY)] | Annotated[float, Meta(ge=0, le=MAX_QTY)]
HsCode = Annotated[str, Meta(min_length=10, max_length=10)]  # and ASCII digits (parser)


class ItemDoc(Struct, rename="camel", gc=False):
    """One order line as sent (CEB311 `items`)."""

    gnum: Count
    item_name: Text
    gcode: HsCode
    qty: Quantity
    price: Money
    total_price: Money
    item_no: OptionalText = None
    unit: OptionalText = None
    country: OptionalText = None


class OrderDoc(Struct, rename="camel", gc=False):
    """A CEB311 order as sent by the platform."""

    guid: Guid
    app_type: AppTypeWire
    app_time: AppTime
    order_no: OrderNo
    ebp_code: EbpCode
    ebc_code: Text
    goods_value: Money
    freight: Money
    discount: Money
    tax_total: Money
    actural_paid: Money  # sic: the standard's spelling
    currency: Currency
    buyer_reg_no: Text
    buyer_name: Text
    buyer_id_type: Text
    buyer_id_number: Text
    buyer_telephone: Text
    consignee: Text
    consignee_telephone: Text
    consignee_address: Text
    items: Annotated[list[ItemDoc], Meta(min_length=1)]
    pay_code: OptionalText = None
    pay_transaction_id: OptionalText = None


class PaymentDoc(Struct, rename="camel", gc=False):
    """A CEB411 payment as sent by the payment company."""

    guid: Guid
    app_type: AppTypeWire
    app_time: AppTime
    order_no: OrderNo
    ebp_code: EbpCode
    pay_code: Text
    pay_transaction_id: Text
    payer_id_type: Text
    payer_id_number: Text
    payer_name: Text
    amount_paid: Money
    currency: Currency
    pay_time: AppTime


class WaybillDoc(Struct, rename="camel", gc=False):
    """A CEB511 waybill as sent by the logistics company."""

    guid: Guid
    app_type: AppTypeWire
    app_time: AppTime
    order_no: OrderNo
    logistics_code: Text
    logistics_no: Text
    freight: Money
    insured_fee: Money
    currency: Currency
    weight: Weight
    pack_no: Count
    consignee: Text
    consignee_telephone: Text
    consignee_address: Text


# The same documents with no unknown field allowed. msgspec checks the UTF-8 of every string
# it decodes and every key it reads, so a message these accept has been checked byte for
# byte, and the parser can skip its own UTF-8 pass (0.7 us for an order with Chinese text).
# A message with unknown fields (or any error) is decoded again by the Structs above, which
# say what is wrong exactly as before. Field order and types are those of the base class.


class ItemDocExact(ItemDoc, forbid_unknown_fields=True):
    """ItemDoc, every key known."""


class OrderDocExact(OrderDoc, forbid_unknown_fields=True):
    """OrderDoc, every key known (in its items too)."""

    # msgspec decodes by this annotation; mypy sees a narrower list type than the base's.
    items: Annotated[list[ItemDocExact], Meta(min_length=1)]  # type: ignore[assignment]


class PaymentDocExact(PaymentDoc, forbid_unknown_fields=True):
    """PaymentDoc, every key known."""


class WaybillDocExact(WaybillDoc, forbid_unknown_fields=True):
    """WaybillDoc, every key known."""


class PublishedDeclaration(Struct, rename="camel", omit_defaults=True, gc=False):
    """A declaration as published on the matched and flagged topics, encoded in C.

    `pipeline.codec.declaration_dict` as a Struct: the same keys in the same order
    (`pipeline.codec.encode_declaration` builds it). Here and not in the codec: a Struct's
    class options (rename, omit_defaults) are lost in a module mypyc compiles.
    """

    declaration_id: str
    order_no: str
    ebp_code: str | None
    ebc_code: str | None
    pay_code: str | None
    pay_transaction_id: str | None
    logistics_code: str | None
    logistics_no: str | None
    buyer_id_number: str | None
    status: str
    return_status: int
    reasons: tuple[str, ...]
    dutiable_value: str | None
    tax: str | None
    inspection: bool
    documents: dict[str, str | None]
    event_time: str
    decided_at: str
    received_at: str | None = None  # omitted, never null, when unknown
