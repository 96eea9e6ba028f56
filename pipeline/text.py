"""Text normalisation for comparisons: NFKC, trimmed, inner whitespace collapsed.

Senders differ in full-width digits (１３８), doubled spaces and trailing blanks;
none of that is a mismatch. ID numbers also ignore case (the check character x = X).
"""

from __future__ import annotations

import unicodedata


def norm(text: str | None) -> str:
    """The comparison form of a text field; None compares as ''."""
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())


def norm_id(text: str | None) -> str:
    """The comparison form of an ID number: `norm` plus upper case."""
    return norm(text).upper()


def mask(text: str | None, keep: int = 1) -> str:
    """A loggable form of a personal field: only the last `keep` characters survive."""
    if not text:
        return ""
    return "*" * max(len(text) - keep, 0) + text[-keep:] if keep else "*" * len(text)


def same(a: str | None, b: str | None) -> bool:
    """`norm(a) == norm(b)`, with the common case (identical text) first."""
    return a == b or norm(a) == norm(b)


def same_id(a: str | None, b: str | None) -> bool:
    """`norm_id(a) == norm_id(b)`, with the common case (identical text) first."""
    return a == b or norm_id(a) == norm_id(b)
