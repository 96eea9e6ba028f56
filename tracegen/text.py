"""Vectorised text: build many short strings as left-aligned UCS-4 code matrices.

numpy's `<U` arrays drop trailing NULs when read, so a (n, width) uint32 matrix
filled from the left is a list of n variable-length strings, built without a
Python call per string. Pieces are (codes, length) pairs composed row by row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tracegen.tables import Flags, Ints, Texts

Codes = NDArray[np.uint32]  # UCS-4 code points
Piece = tuple[Codes, Ints | int]  # codes (one row for all strings, or a row each) and lengths


def const(text: str) -> Piece:
    return np.array([ord(c) for c in text], dtype=np.uint32), len(text)


def digits(values: Ints, width: int = 0) -> Piece:
    """Decimal digits of non-negative ints; zero-padded to `width` if given."""
    values = np.asarray(values, dtype=np.int64)
    nd = np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)
    nd = np.where(values >= 10**nd, nd + 1, nd)  # log10 rounding at exact powers
    nd = np.maximum(nd, width)
    wmax = int(nd.max()) if len(nd) else 1
    j = np.arange(wmax)
    power = np.clip(nd[:, None] - 1 - j[None, :], 0, 18)
    codes = (values[:, None] // (10**power)) % 10 + 48
    return codes.astype(np.uint32), nd


def table(vocab: list[str] | tuple[str, ...], idx: Ints) -> Texts:
    """Object array of vocabulary strings (no new string objects)."""
    picked: Texts = np.array(list(vocab), dtype=object)[idx]
    return picked


def compose(n: int, pieces: list[Piece]) -> Texts:
    """Row-wise concatenation of pieces -> object array of n strings."""
    lens = [np.broadcast_to(np.asarray(length, dtype=np.int64), (n,)) for _, length in pieces]
    total = np.sum(lens, axis=0) if lens else np.zeros(n, np.int64)
    width = max(1, int(total.max()) if n else 1)
    out = np.zeros((n, width), dtype=np.uint32)
    rows = np.arange(n)
    off = np.zeros(n, np.int64)
    for (codes, _), ln in zip(pieces, lens, strict=True):
        for j in range(codes.shape[-1]):
            mask = j < ln
            col = codes[j] if codes.ndim == 1 else codes[mask, j]
            out[rows[mask], off[mask] + j] = col
        off = off + ln
    return np.array(out.view(f"<U{width}").ravel().tolist(), dtype=object)


def money_fragments(fen: Ints, as_string: Flags) -> Texts:
    """Money fragments: '"12.30"' (string) or 12.3 / 12 / 12.34 (JSON number), per row."""
    n = len(fen)
    whole, cents = digits(fen // 100)
    c1, c2 = (fen % 100) // 10 + 48, fen % 10 + 48
    as_string = np.asarray(as_string, dtype=bool)
    num_len = np.where(fen % 100 == 0, 0, np.where(fen % 10 == 0, 2, 3))
    frac_len = np.where(as_string, 3, num_len)
    frac = np.stack([np.full(n, 46), c1, c2], axis=1).astype(np.uint32)
    quote = const('"')[0]
    return compose(
        n, [(quote, as_string.astype(np.int64)), (whole, cents), (frac, frac_len), (quote, as_string.astype(np.int64))]
    )


def numbered(prefix: str, values: Ints, width: int, suffix: str = "") -> Texts:
    """prefix + zero-padded number + suffix, per row."""
    n = len(values)
    return compose(n, [const(prefix), digits(values, width), const(suffix)])
