"""The three files' lines: base rows, fault messages and invalid messages, in arrival order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clearance.traces import FILE_NAMES
from tracegen.context import Context
from tracegen.docs import GUID_FIELD, TEMPLATES, TYPE_FIELD, app_times, render
from tracegen.faults import FAULTS
from tracegen.labels import Msg
from tracegen.tables import Columns, Flags, Ints

INVALID_KINDS = ("not-json", "not-object", "missing-field", "wrong-type", "bad-money", "bad-apptime")
_WRONG = ({"items": "none"}, {"payerName": ["x"]}, {"consignee": {"name": "x"}})
_MONEY = ("goodsValue", "amountPaid", "freight")


def fault_messages(ctx: Context, faulted: list[tuple[int, str]]) -> dict[int, list[Msg]]:
    """order index -> its messages, for every faulted (order index, fault kind)."""
    out: dict[int, list[Msg]] = {}
    uid = 0
    for i, kind in faulted:
        msgs = []
        for seq, (file, t, row) in enumerate(FAULTS[kind](ctx, i), start=1):
            text = TEMPLATES[file] % tuple(row)
            guid, app_type = row[GUID_FIELD[file]][1:-1], int(row[TYPE_FIELD[file]])
            msgs.append(Msg(t, file, seq, guid, app_type, text, uid))
            uid += 1
        out[i] = msgs
    return out


@dataclass(frozen=True, slots=True)
class FileOrder:
    """One file's lines in arrival order: base rows by order index or fault texts, and invalid lines."""

    file: int  # 0, 1, 2: orders, payments, waybills
    order: Ints  # order index per valid line
    src: Ints  # -1: the order's base row, else index into `extra`
    extra: list[Msg]
    times: Ints
    base_pos: Ints  # valid line of each order's base row, -1 if none
    uid_pos: dict[int, int]
    invalid_at: Ints = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted: before which valid line
    invalid: list[str] = field(default_factory=list)

    def line_no(self, valid_line: int) -> int:
        """0-based line in the written file of the `valid_line`-th valid line."""
        return valid_line + int(np.searchsorted(self.invalid_at, valid_line, side="right"))

    @property
    def lines(self) -> int:
        return len(self.order) + len(self.invalid)


def arrange(file: int, base_t: Ints, clean: Flags, faults: dict[int, list[Msg]]) -> FileOrder:
    """Sort one file: by appTime, then order index, then the fault's message sequence.

    base_t: the base document's appTime of every order; clean: orders written as they are.
    """
    extra = [m for i in sorted(faults) for m in faults[i] if m.file == file]
    owner = [i for i in sorted(faults) for m in faults[i] if m.file == file]
    idx = np.flatnonzero(clean)
    t = np.concatenate([base_t[idx], np.array([m.time for m in extra], dtype=np.int64)])
    order = np.concatenate([idx, np.array(owner, dtype=np.int64)])
    seq = np.concatenate([np.zeros(len(idx), np.int64), np.array([m.seq for m in extra], dtype=np.int64)])
    src = np.concatenate([np.full(len(idx), -1, np.int64), np.arange(len(extra), dtype=np.int64)])
    perm = np.lexsort((seq, order, t))
    pos = np.empty(len(perm), np.int64)
    pos[perm] = np.arange(len(perm))
    base_pos = np.full(len(base_t), -1, np.int64)
    base_pos[idx] = pos[: len(idx)]
    uid_pos = {m.uid: int(pos[len(idx) + k]) for k, m in enumerate(extra)}
    return FileOrder(file, order[perm], src[perm], extra, t[perm], base_pos, uid_pos)


def add_invalid(
    rng: np.random.Generator, fo: FileOrder, *, count: int, sample: str, day0: np.datetime64
) -> tuple[FileOrder, list[dict[str, Any]]]:
    """`fo` with `count` invalid messages made from `sample` (a valid document), and their dead letters."""
    m = len(fo.order)
    invalid_at = np.sort(rng.integers(0, m + 1, count)) if m else np.zeros(0, np.int64)
    truth, invalid = [], []
    for r, p in enumerate(invalid_at.tolist()):
        kind = INVALID_KINDS[int(rng.integers(0, len(INVALID_KINDS)))]
        doc = orjson.loads(sample)
        doc["orderNo"] = f"BAD{fo.file}{r:08d}{int(rng.integers(0, 10**6)):06d}"
        doc["appTime"] = app_times(np.array([int(fo.times[max(p - 1, 0)]) if m else 0]), day0)[0]
        invalid.append(_broken(rng, doc, fo.file, kind))
        truth.append({"file": FILE_NAMES[fo.file], "line": p + r, "kind": kind})
    return replace(fo, invalid_at=invalid_at, invalid=invalid), truth


def write_file(path: Path, fo: FileOrder, cols: Columns, chunk: int = 100_000) -> None:
    """Stream the file: render base rows chunk by chunk, place fault texts and invalid lines."""
    template, m = TEMPLATES[fo.file], len(fo.order)
    with path.open("wb") as out:
        for a in range(0, max(m, 1), chunk):
            b = min(a + chunk, m)
            src = fo.src[a:b]
            lines = np.empty(b - a, dtype=object)
            base = src < 0
            lines[base] = np.array(render(template, cols, fo.order[a:b][base]) + [None], dtype=object)[:-1]
            lines[~base] = [fo.extra[s].text for s in src[~base].tolist()]
            text = lines.tolist()
            hi = len(fo.invalid) if b == m else int(np.searchsorted(fo.invalid_at, b, side="left"))
            lo = int(np.searchsorted(fo.invalid_at, a, side="left"))
            for r in range(hi - 1, lo - 1, -1):
                text.insert(int(fo.invalid_at[r]) - a, fo.invalid[r])
            if text:
                out.write(("\n".join(text) + "\n").encode())


def _broken(rng: np.random.Generator, doc: dict[str, Any], file: int, kind: str) -> str:
    """An invalid message of `kind` made of a valid document of `file`."""
    if kind == "not-json":
        return orjson.dumps(doc).decode()[: int(rng.integers(5, 40))]
    if kind == "not-object":
        return orjson.dumps([doc["orderNo"], doc["appTime"]]).decode()
    if kind == "missing-field":
        del doc[("guid", "orderNo", "appTime", "currency")[int(rng.integers(0, 4))]]
    elif kind == "wrong-type":
        doc.update(_WRONG[file])
    elif kind == "bad-money":
        doc[_MONEY[file]] = "12.345" if rng.random() < 0.7 else 12.345
    else:
        doc["appTime"] = ("2016111100000", "20161131120000", "2016-11-11 00:00")[int(rng.integers(0, 3))]
    return orjson.dumps(doc).decode()
