"""JSON templates and vectorised field fragments for the three documents.

A document is a row: a list of ready-to-embed JSON fragments (strings already
quoted, money already formatted), rendered with `%` into its template. Faults edit
fragments of a copied row; the label oracle parses the rendered bytes back.
"""

from __future__ import annotations

import numpy as np

from tracegen.tables import Columns, Ints, Texts

ORDER_T = (
    '{"guid":%s,"appType":%s,"appTime":%s,"orderNo":%s,"ebpCode":%s,"ebcCode":%s,"goodsValue":%s,'
    '"freight":%s,"discount":%s,"taxTotal":%s,"acturalPaid":%s,"currency":"142","buyerRegNo":%s,'
    '"buyerName":%s,"buyerIdType":"1","buyerIdNumber":%s,"buyerTelephone":%s%s,"consignee":%s,'
    '"consigneeTelephone":%s,"consigneeAddress":%s,"items":[%s]}'
)
O_GUID, O_TYPE, O_TIME, O_NO, O_EBP, O_EBC, O_GOODS, O_FREIGHT, O_DISC, O_TAX, O_PAID = range(11)
O_REG, O_NAME, O_ID, O_TEL, O_REF, O_CNEE, O_CTEL, O_CADDR, O_ITEMS = range(11, 20)

PAYMENT_T = (
    '{"guid":%s,"appType":%s,"appTime":%s,"payCode":%s,"payTransactionId":%s,"orderNo":%s,"ebpCode":%s,'
    '"payerIdType":"1","payerIdNumber":%s,"payerName":%s,"amountPaid":%s,"currency":"142","payTime":%s}'
)
P_GUID, P_TYPE, P_TIME, P_CODE, P_TX, P_NO, P_EBP, P_ID, P_NAME, P_AMT, P_PTIME = range(11)

WAYBILL_T = (
    '{"guid":%s,"appType":%s,"appTime":%s,"logisticsCode":%s,"logisticsNo":%s,"orderNo":%s,"freight":%s,'
    '"insuredFee":%s,"currency":"142","weight":%s,"packNo":1,"consignee":%s,"consigneeTelephone":%s,'
    '"consigneeAddress":%s}'
)
W_GUID, W_TYPE, W_TIME, W_CODE, W_NO, W_ORDER, W_FREIGHT, W_INS, W_WEIGHT, W_CNEE, W_CTEL, W_CADDR = range(12)

ITEM_T = (
    '{"gnum":%d,"itemNo":"%s","itemName":"%s","gcode":"%s","qty":%s,"unit":"%s","price":%s,'
    '"totalPrice":%s,"country":"%s"}'
)
I_GNUM, I_NO, I_NAME, I_GCODE, I_QTY, I_UNIT, I_PRICE, I_TOTAL, I_COUNTRY = range(9)

TEMPLATES = (ORDER_T, PAYMENT_T, WAYBILL_T)  # by file: orders, payments, waybills
GUID_FIELD = (O_GUID, P_GUID, W_GUID)
TYPE_FIELD = (O_TYPE, P_TYPE, W_TYPE)
TIME_FIELD = (O_TIME, P_TIME, W_TIME)


def quoted(values: Texts | list[str]) -> Texts:
    """'"value"' fragments as an object array (the vocabularies need no JSON escapes)."""
    texts: Texts = np.asarray(values, dtype=object)
    out: Texts = '"' + texts + '"'
    return out


def render(template: str, cols: Columns, idx: Ints) -> list[str]:
    """Rendered documents of the rows `idx` (gathered column by column)."""
    return [template % row for row in zip(*(c[idx].tolist() for c in cols), strict=True)]


def money(fen: int, as_string: bool) -> str:
    """One money fragment: '"12.30"' or 12.3 (a JSON number, shortest form)."""
    whole, cents = divmod(fen, 100)
    if as_string:
        return f'"{whole}.{cents:02d}"'
    if cents == 0:
        return str(whole)
    return f"{whole}.{cents // 10}" if cents % 10 == 0 else f"{whole}.{cents:02d}"


def guids(rng: np.random.Generator, n: int) -> Texts:
    """n uuid4-shaped 36-char ids, deterministic from the generator."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((n, 36), dtype=np.uint8)
    pos = [i for i in range(36) if i not in (8, 13, 18, 23)]
    chars[:, [8, 13, 18, 23]] = ord("-")
    nib = np.stack([raw >> 4, raw & 0x0F], axis=2).reshape(n, 32)
    chars[:, pos] = hexd[nib]
    return np.array(chars.astype(np.uint32).view("<U36").ravel().tolist(), dtype=object)


def time_frags(t: Ints, day0: np.datetime64) -> Texts:
    """'"YYYYMMDDhhmmss"' fragments for second offsets from `day0` (CST midnight)."""
    uniq, inverse = np.unique(t, return_inverse=True)
    table = np.array([f'"{s}"' for s in app_times(uniq, day0)], dtype=object)
    return table[inverse]


def app_times(t: Ints, day0: np.datetime64) -> list[str]:
    """YYYYMMDDhhmmss of second offsets from `day0`."""
    stamps = (day0 + t.astype("timedelta64[s]")).astype("datetime64[s]").astype(str)
    return [s[0:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19] for s in stamps.tolist()]


def render_items(rows: list[list[object]]) -> str:
    """The `items` array body of one order from its item rows (fields in ITEM_T order)."""
    return ",".join(ITEM_T % tuple(row) for row in rows)


def fen_of(fragment: str) -> int:
    """Fen of a money fragment written by `money`."""
    whole, _, cents = fragment.strip('"').partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])
