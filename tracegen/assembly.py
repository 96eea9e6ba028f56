"""Turn base columns and fault messages into the three files, and labels into truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tracegen import docs as D
from tracegen.faults import FAULTS, Ctx
from tracegen.labels import Msg

INVALID_KINDS = ("not-json", "not-object", "missing-field", "wrong-type", "bad-money", "bad-apptime")
_WRONG = ({"items": "none"}, {"payerName": ["x"]}, {"consignee": {"name": "x"}})
_MONEY = ("goodsValue", "amountPaid", "freight")


def fault_messages(ctx: Ctx, faulted: list[tuple[int, str]]) -> dict[int, list[Msg]]:
    """order index -> its messages, for every faulted order."""
    out: dict[int, list[Msg]] = {}
    uid = 0
    for i, kind in faulted:
        msgs = []
        for seq, (file, t, row) in enumerate(FAULTS[kind](ctx, i), start=1):
            text = D.TEMPLATES[file] % tuple(row)
            guid, app_type = row[D.GUID_FIELD[file]][1:-1], int(row[D.TYPE_FIELD[file]])
            msgs.append(Msg(t, file, seq, guid, app_type, text, uid))
            uid += 1
        out[i] = msgs
    return out


@dataclass(slots=True)
class FileOrder:
    """One file's lines in arrival order: base rows by order index or fault texts."""

    order: np.ndarray  # order index per valid line
    src: np.ndarray  # -1: the order's base row, else index into `extra`
    extra: list[Msg]
    times: np.ndarray
    base_pos: np.ndarray  # valid line of each order's base row, -1 if none
    uid_pos: dict[int, int]
    invalid_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    invalid: list[str] = field(default_factory=list)

    def line_no(self, valid_line: int) -> int:
        """0-based line in the written file of the `valid_line`-th valid line."""
        return valid_line + int(np.searchsorted(self.invalid_at, valid_line, side="right"))


def arrange(file: int, n: int, base_t: np.ndarray, clean: np.ndarray, faults: dict[int, list[Msg]]) -> FileOrder:
    """Sort one file: by appTime, then order index, then the fault's message sequence."""
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
    base_pos = np.full(n, -1, np.int64)
    base_pos[idx] = pos[: len(idx)]
    uid_pos = {m.uid: int(pos[len(idx) + k]) for k, m in enumerate(extra)}
    return FileOrder(order[perm], src[perm], extra, t[perm], base_pos, uid_pos)


def add_invalid(
    rng: np.random.Generator, fo: FileOrder, file: int, k: int, sample: str, day0: np.datetime64
) -> list[dict[str, Any]]:
    """Choose k invalid messages and their places; returns the dead-letter truth."""
    m = len(fo.order)
    fo.invalid_at = np.sort(rng.integers(0, m + 1, k)) if m else np.zeros(0, np.int64)
    truth = []
    for r, p in enumerate(fo.invalid_at.tolist()):
        kind = INVALID_KINDS[int(rng.integers(0, len(INVALID_KINDS)))]
        t = int(fo.times[max(p - 1, 0)]) if m else 0
        fo.invalid.append(_broken(rng, file, sample, kind, t, day0, r))
        truth.append({"file": D.FILES[file], "line": p + r, "kind": kind})
    return truth


def write_file(path: Path, file: int, fo: FileOrder, cols: list[np.ndarray], chunk: int = 100_000) -> None:
    """Stream the file: render base rows chunk by chunk, place fault texts and invalid lines."""
    template, m = D.TEMPLATES[file], len(fo.order)
    with path.open("wb") as out:
        for a in range(0, max(m, 1), chunk):
            b = min(a + chunk, m)
            src = fo.src[a:b]
            lines = np.empty(b - a, dtype=object)
            base = src < 0
            lines[base] = np.array(D.render(template, cols, fo.order[a:b][base]) + [None], dtype=object)[:-1]
            lines[~base] = [fo.extra[s].text for s in src[~base].tolist()]
            text = lines.tolist()
            hi = len(fo.invalid) if b == m else int(np.searchsorted(fo.invalid_at, b, side="left"))
            lo = int(np.searchsorted(fo.invalid_at, a, side="left"))
            for r in range(hi - 1, lo - 1, -1):
                text.insert(int(fo.invalid_at[r]) - a, fo.invalid[r])
            if text:
                out.write(("\n".join(text) + "\n").encode())


def _broken(rng: np.random.Generator, file: int, template: str, kind: str, t: int, day0: np.datetime64, r: int) -> str:
    doc = orjson.loads(template)
    doc["orderNo"] = f"BAD{file}{r:08d}{int(rng.integers(0, 10**6)):06d}"
    doc["appTime"] = D.app_times(np.array([t]), day0)[0]
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
