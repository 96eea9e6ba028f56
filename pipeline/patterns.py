r"""Regular expressions shared by the runtime parser and the published JSON Schemas.

Each constant is the exact `pattern` string of `schemas/*.schema.json`; a unit test
checks that they stay equal. They are written in the common subset of Python `re` and
ECMA-262 (ASCII classes only, no `\\d`). Match them with `re.fullmatch` (or the
compiled `fullmatch`): with `re.match`/`re.search`, Python's `$` also matches before a
trailing newline, which ECMA-262 (and so the schema) does not.
"""

from __future__ import annotations

# YYYYMMDDhhmmss, China Standard Time, years 1900-2099. Days are valid for the month;
# Feb 29 only in leap years (divisible by 4, except 1900). No leap seconds.
APP_TIME_PATTERN = (
    r"^(?:(?:19|20)[0-9]{2}(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)|02(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:0[048]|[2468][048]|[13579][26]))0229)"
    r"(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$"
)

# CNY yuan as a decimal string: no sign, no leading zero, at most 2 decimals and
# at most 999999999999.99 (the same bound as a money number).
MONEY_STRING_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"

# The 10-digit HS code of an order item.
GCODE_PATTERN = r"^[0-9]{10}$"
