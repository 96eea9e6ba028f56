"""`clearance generate OUTDIR`: a synthetic 11.11 trace with ground-truth labels.

Writes orders/payments/waybills.jsonl (raw message values, each file in appTime
order), labels.jsonl (what the pipeline must decide), expected_deadletters.jsonl
and trace.json. Same arguments and seed, same bytes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time
from datetime import date, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline.decisions import inspection_selected
from tracegen import assembly as A
from tracegen import base as B
from tracegen import builder as G
from tracegen import columns as C
from tracegen import docs as D
from tracegen.faults import FAULTS, Ctx
from tracegen.labels import Msg, dutiable, norm, reasons, settle, status

INSPECTION_SEED, INSPECTION_RATE = "clearance", 0.055
Times = tuple[np.ndarray, np.ndarray, np.ndarray]
_CLEAN_LABEL = '{"orderNo":"%s","status":"%s","reasons":[]}'
_PARALLEL_FROM = 200_000  # orders; smaller traces write the three files in-process
Cols = list[np.ndarray]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clearance generate", description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--preset", choices=sorted(G.PRESETS), default="peak-hour")
    p.add_argument("--orders", type=int, default=None, help="number of orders (default: the preset's)")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--regime", choices=sorted(B.REGIMES), default=None)
    p.add_argument("--fault-rate", type=float, default=0.12, help="fraction of orders with a fault")
    p.add_argument("--invalid-rate", type=float, default=0.002, help="invalid messages per valid message")
    return p


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    info = generate(args.outdir, args.preset, args.orders, args.seed, args.regime, args.fault_rate, args.invalid_rate)
    print(f"wrote {info['orders']} orders to {args.outdir} in {time.perf_counter() - started:.1f} s")
    return 0


def _plan(rng: np.random.Generator, n: int, fault_rate: float) -> np.ndarray:
    """Fault kind index per order (-1: none); every kind gets the same share."""
    kinds = np.full(n, -1, np.int64)
    k = min(n, round(n * fault_rate))
    kinds[rng.permutation(n)[:k]] = np.arange(k) % len(FAULTS)
    return kinds


def generate(
    outdir: Path, preset_name: str, orders: int | None, seed: int, regime_name: str | None,
    fault_rate: float, invalid_rate: float,
) -> dict[str, Any]:  # fmt: skip
    preset = G.PRESETS[preset_name]
    regime = B.REGIMES[regime_name or preset.regime]
    n = orders or preset.orders
    rng = np.random.default_rng(seed)
    day0 = np.datetime64(preset.day0 + "T00:00:00")
    t = B.sample_times(rng, B.day_rate(preset.seconds, preset.spike, preset.tau_s, np.array(preset.hourly)), n)
    kinds = _plan(rng, n, fault_rate)
    names = list(FAULTS)
    m = G._money_arrays(rng, n, preset, regime)
    groups = G.buster_orders(
        rng, t, kinds < 0, G.busters_per_group(regime), max(2, round((kinds >= 0).sum() / len(names) / 10))
    )
    _targets(rng, m, kinds, names, groups, regime)
    G.finish_money(rng, m, regime)
    buyer = G.assign_buyers(rng, t, m["goods"] + m["freight"], regime.annual_limit_fen // 2)
    top = int(buyer.max()) + 1
    for g, members in enumerate(groups):
        buyer[members] = top + g
    n_people = int(buyer.max()) + 1 + n // 10
    people = B.make_people(rng, n_people, "1960-01-01", "2005-12-31")
    consignee = np.where(rng.random(n) < 0.8, buyer, rng.integers(0, n_people, n))
    pay_time, push, waybill_t = G.doc_times(rng, t)
    for members in groups:
        push[members] = t[members] + rng.integers(0, 60, len(members))
        waybill_t[members] = t[members] + rng.integers(30, 90, len(members))
    day = preset.day0.replace("-", "")
    order_no = C.numbered(preset.prefix + day, np.arange(n) + 1, 9)
    times = {"buyer": buyer, "consignee": consignee, "order_no": order_no, "t_order": t, "t_push": push,
             "t_pay": pay_time, "t_waybill": waybill_t}  # fmt: skip
    doc_t = (t, push, waybill_t)
    cols, fmsgs = _documents(rng, seed, m, people, times, day0, day, kinds, names)
    truth, where, writers = _write_files(rng, outdir, n, cols, doc_t, kinds < 0, fmsgs, invalid_rate, day0)
    # The labels need no file bytes: they are computed while the writers run.
    labels = _labels(n, order_no.tolist(), fmsgs, doc_t, where, people.id_number[buyer], m, regime)
    _write(outdir, labels, truth)
    _join(writers)
    info = _info(
        preset, regime, n, seed, kinds, names, groups, truth, where, fault_rate, invalid_rate, doc_t, day0, fmsgs
    )
    (outdir / "trace.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return info


def _documents(
    rng: np.random.Generator, seed: int, m: dict[str, Any], people: B.People, times: dict[str, Any],
    day0: np.datetime64, day: str, kinds: np.ndarray, names: list[str],
) -> tuple[list[Cols], dict[int, list[Msg]]]:  # fmt: skip
    """Fragment columns of the base documents, and the messages of the faulted orders."""
    item_cols = C.item_columns(rng, m)
    m["items_json"] = C.render_all_items(item_cols, m["start"])
    cols = C.columns(rng, m, people, times, day0)
    del m["items_json"]
    ctx = _ctx(rng, seed, cols, (times["t_order"], times["t_push"], times["t_waybill"]), m, item_cols, people, day)
    faulted = [(int(i), names[k]) for i, k in enumerate(kinds.tolist()) if k >= 0]
    return list(cols), A.fault_messages(ctx, faulted)


def _write_files(
    rng: np.random.Generator, outdir: Path, n: int, cols: list[Cols], doc_t: Times, clean: np.ndarray,
    fmsgs: dict[int, list[Msg]], invalid_rate: float, day0: np.datetime64,
) -> tuple[list[dict[str, Any]], list[A.FileOrder], list[BaseProcess]]:  # fmt: skip
    """Write the three files, or start the processes writing them (see `_join`)."""
    outdir.mkdir(parents=True, exist_ok=True)
    truth: list[dict[str, Any]] = []
    where = []
    for f in range(3):
        fo = A.arrange(f, n, doc_t[f], clean, fmsgs)
        sample = D.render(D.TEMPLATES[f], cols[f], np.array([0]))[0]
        truth += A.add_invalid(rng, fo, f, int(round(len(fo.order) * invalid_rate)), sample, day0)
        where.append(fo)
    if n < _PARALLEL_FROM:
        for f in range(3):
            A.write_file(outdir / D.FILES[f], f, where[f], cols[f])
        return truth, where, []
    # The files are independent and all randomness is drawn above: write them in forked
    # children (the columns are shared copy-on-write), the bytes are the same either way.
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=A.write_file, args=(outdir / D.FILES[f], f, where[f], cols[f])) for f in range(3)]
    for w in workers:
        w.start()
    return truth, where, list(workers)


def _join(workers: list[BaseProcess]) -> None:
    for w in workers:
        w.join()
    if any(w.exitcode != 0 for w in workers):
        raise RuntimeError("writing a trace file failed")


def _targets(rng: np.random.Generator, m: dict[str, Any], kinds: np.ndarray, names: list[str],
             groups: list[list[int]], regime: B.Regime) -> None:  # fmt: skip
    single = regime.single_limit_fen
    for i in np.flatnonzero(kinds == names.index("single-limit")).tolist():
        G.set_dutiable(m, i, single + int(rng.integers(1, single // 2)))
    for i in np.flatnonzero(kinds == names.index("single-limit-boundary")).tolist():
        G.set_dutiable(m, i, single)
    for members in groups:
        for i in members:
            m["freight"][i] = 0
            G.set_dutiable(m, i, int(single * rng.uniform(0.6, 0.98)))


def _ctx(
    rng: np.random.Generator, seed: int, cols: tuple[Cols, Cols, Cols], doc_t: Times, m: dict[str, Any],
    item_cols: Cols, people: B.People, day: str,
) -> Ctx:  # fmt: skip
    supply = iter(D.guids(rng, 4 * len(m["goods"]) // 10 + 1000))
    start = m["start"]

    def items(i: int) -> list[list[Any]]:
        return [[c[j] for c in item_cols] for j in range(int(start[i]), int(start[i + 1]))]

    first = date(int(day[:4]), int(day[4:6]), int(day[6:]))

    def tfrag(t: int) -> str:
        d, r = divmod(t, 86_400)
        return f'"{(first + timedelta(days=d)).strftime("%Y%m%d")}{r // 3600:02d}{r // 60 % 60:02d}{r % 60:02d}"'

    return Ctx(
        cols,
        (doc_t[0].tolist(), doc_t[1].tolist(), doc_t[2].tolist()),
        items,
        tfrag,
        lambda: next(supply),
        random.Random(seed),  # noqa: S311 - synthetic data, not security
        m["paid"].tolist(),
        m["freight"].tolist(),
        m["tax"].tolist(),
        people,
        day,
    )


def _labels(
    n: int, order_no: list[str], fmsgs: dict[int, list[Msg]], doc_t: Times, where: list[A.FileOrder],
    buyer_ids: np.ndarray, m: dict[str, Any], regime: B.Regime,
) -> list[str]:  # fmt: skip
    """labels.jsonl lines: one per order, then one per DOCUMENT_AFTER_DECISION record."""
    positive = G.positive_list()
    found: list[list[str] | None] = [None] * n  # None or []: no reason (yet)
    extra: list[dict[str, Any]] = []
    decided_at: dict[int, tuple[int, int, int]] = {}
    duty = (m["goods"] + m["freight"]).tolist()
    # The quota is keyed like the pipeline: by the (normalised) buyerIdNumber on the wire,
    # so two people who happen to share an ID number share a quota here too.
    key: list[str] = buyer_ids.tolist()
    for i, msgs in fmsgs.items():
        out = settle(msgs)
        extra += [{"orderNo": order_no[i], "status": "REVIEW", "reasons": ["DOCUMENT_AFTER_DECISION"],
                   "afterDecision": True, "guid": g} for g in out.after]  # fmt: skip
        if out.reasons is not None:
            found[i] = out.reasons
            continue
        docs = [d for d in out.docs if d is not None]
        found[i] = reasons(docs, regime.single_limit_fen, regime.tax_permille, positive)
        duty[i], c = dutiable(docs[0]), out.completing
        if c is None:
            raise RuntimeError("a complete order without its completing message")
        fo = where[c.file]
        decided_at[i] = (c.time, c.file, fo.line_no(fo.uid_pos[c.uid]))
        key[i] = norm(docs[0]["buyerIdNumber"]).upper()
    _quota(found, decided_at, duty, key, doc_t, where, regime)
    labels = []
    for i in range(n):
        r = found[i] or []
        if r:
            labels.append(orjson.dumps({"orderNo": order_no[i], "status": status(r, False), "reasons": r}).decode())
        else:
            inspected = inspection_selected(order_no[i], INSPECTION_SEED, INSPECTION_RATE)
            labels.append(_CLEAN_LABEL % (order_no[i], "INSPECTION" if inspected else "RELEASED"))
    return labels + [orjson.dumps(x).decode() for x in extra]


def _quota(
    found: list[list[str] | None], decided_at: dict[int, tuple[int, int, int]], duty: list[int], key: list[str],
    doc_t: Times, where: list[A.FileOrder], regime: B.Regime,
) -> None:  # fmt: skip
    total: dict[str, int] = {}
    complete = [i for i, r in enumerate(found) if not r or (not (r[0].startswith("MISSING_") and i in decided_at) and
                not any(x.startswith("MISSING_") for x in r))]  # fmt: skip
    for i in complete:
        total[key[i]] = total.get(key[i], 0) + duty[i]
    hot = [i for i in complete if total[key[i]] > regime.annual_limit_fen]
    for i in hot:
        if i not in decided_at:
            decided_at[i] = max((int(doc_t[f][i]), f, where[f].line_no(int(where[f].base_pos[i]))) for f in range(3))
    used: dict[str, int] = {}
    for i in sorted(hot, key=lambda i: decided_at[i]):
        r = found[i] or []
        if used.get(key[i], 0) + duty[i] > regime.annual_limit_fen:
            found[i] = sorted([*r, "ANNUAL_QUOTA_EXCEEDED"])
        elif not r:
            used[key[i]] = used.get(key[i], 0) + duty[i]


def _write(outdir: Path, labels: list[str], truth: list[dict[str, Any]]) -> None:
    (outdir / "labels.jsonl").write_bytes(("\n".join(labels) + "\n").encode() if labels else b"")
    (outdir / "expected_deadletters.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in truth))


def _info(
    preset: G.Preset, regime: B.Regime, n: int, seed: int, kinds: np.ndarray, names: list[str],
    groups: list[list[int]], truth: list[dict[str, Any]], where: list[A.FileOrder], fault_rate: float,
    invalid_rate: float, doc_t: Times, day0: np.datetime64, fmsgs: dict[int, list[Msg]],
) -> dict[str, Any]:  # fmt: skip
    counts = {name: int((kinds == k).sum()) for k, name in enumerate(names)}
    counts["annual-quota-orders"] = sum(len(g) for g in groups)
    invalid = {k: sum(1 for x in truth if x["kind"] == k) for k in A.INVALID_KINDS}
    last = (
        max(int(x.max()) for x in doc_t)
        if not fmsgs
        else max(max(int(x.max()) for x in doc_t), max(m.time for ms in fmsgs.values() for m in ms))
    )
    return {
        "seed": seed, "preset": preset.name, "orders": n, "regime": {"name": regime.name,
        "singleLimitFen": regime.single_limit_fen, "annualLimitFen": regime.annual_limit_fen,
        "taxPermille": regime.tax_permille}, "faultRate": fault_rate, "invalidRate": invalid_rate,
        "faults": counts, "annualQuotaBuyers": len(groups), "invalid": invalid,
        "lines": {name: len(fo.order) + len(fo.invalid) for name, fo in zip(D.FILES, where, strict=True)},
        "timeSpan": {"first": D.app_times(np.array([0]), day0)[0], "last": D.app_times(np.array([last]), day0)[0]},
        "inspection": {"seed": INSPECTION_SEED, "rate": INSPECTION_RATE},
    }  # fmt: skip
