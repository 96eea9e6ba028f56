"""`clearance generate OUTDIR`: a synthetic 11.11 trace with ground-truth labels.

Writes orders/payments/waybills.jsonl (raw message values, each file in appTime
order), labels.jsonl (what the pipeline must decide), expected_deadletters.jsonl
and trace.json. Same arguments and seed, same bytes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clearance.traces import FILE_NAMES
from tracegen.assembly import INVALID_KINDS, FileOrder, add_invalid, arrange, fault_messages, write_file
from tracegen.columns import fragments, item_columns, render_all_items
from tracegen.context import context
from tracegen.docs import TEMPLATES, app_times, render
from tracegen.labels import Msg
from tracegen.money import draw_basket, finish_money
from tracegen.people import parties
from tracegen.plan import KINDS, Plan, aim, fault_kinds, quota_groups
from tracegen.presets import PRESETS, REGIMES, Preset, Regime
from tracegen.tables import Fragments, Orders
from tracegen.text import numbered
from tracegen.times import day_rate, doc_times, sample_times
from tracegen.truth import INSPECTION_RATE, INSPECTION_SEED, label_lines

_PARALLEL_FROM = 200_000  # orders; smaller traces write the three files in-process


@dataclass(frozen=True, slots=True)
class Spec:
    """What to generate: the command's arguments, resolved."""

    preset: Preset
    regime: Regime
    orders: int
    seed: int
    fault_rate: float  # fraction of orders with a fault
    invalid_rate: float  # invalid messages per valid message


@dataclass(frozen=True, slots=True)
class Draft:
    """A trace before its files are laid out: base orders, fault plan, fragments, fault messages."""

    spec: Spec
    orders: Orders
    plan: Plan
    fragments: Fragments
    messages: dict[int, list[Msg]]  # order index -> its messages, for the faulted orders


@dataclass(frozen=True, slots=True)
class Layout:
    """The three files' lines, and the dead letters their invalid lines must produce."""

    files: tuple[FileOrder, ...]  # orders, payments, waybills
    dead_letters: list[dict[str, Any]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clearance generate", description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--preset", choices=sorted(PRESETS), default="peak-hour")
    p.add_argument("--orders", type=int, default=None, help="number of orders (default: the preset's)")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--regime", choices=sorted(REGIMES), default=None)
    p.add_argument("--fault-rate", type=float, default=0.12, help="fraction of orders with a fault")
    p.add_argument("--invalid-rate", type=float, default=0.002, help="invalid messages per valid message")
    return p


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    info = generate(args.outdir, args.preset, args.orders, args.seed, args.regime, args.fault_rate, args.invalid_rate)
    print(f"wrote {info['orders']} orders to {args.outdir} in {time.perf_counter() - started:.1f} s")
    return 0


def generate(
    outdir: Path, preset_name: str, orders: int | None, seed: int, regime_name: str | None,
    fault_rate: float, invalid_rate: float,
) -> dict[str, Any]:  # fmt: skip
    """Write a trace into `outdir`; returns what trace.json says about it."""
    preset = PRESETS[preset_name]
    regime = REGIMES[regime_name or preset.regime]
    spec = Spec(preset, regime, orders or preset.orders, seed, fault_rate, invalid_rate)
    rng = np.random.default_rng(seed)
    draft = _draft(rng, spec)
    layout = _layout(rng, draft)
    writers = _write_files(outdir, layout, draft)
    # The labels need no file bytes: they are computed while the writers run.
    _write_truth(outdir, label_lines(draft.orders, draft.messages, layout.files, regime), layout.dead_letters)
    _join(writers)
    info = _info(draft, layout)
    (outdir / "trace.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return info


def _draft(rng: np.random.Generator, spec: Spec) -> Draft:
    """Draw the base orders and the fault plan, then the documents' fragments and the fault messages."""
    preset, regime, n = spec.preset, spec.regime, spec.orders
    t = sample_times(rng, day_rate(preset), n)
    kinds = fault_kinds(rng, n, spec.fault_rate)
    basket = draw_basket(rng, n, preset.mean_yuan, regime)
    plan = Plan(kinds, quota_groups(rng, t, kinds, regime))
    aim(rng, basket, plan, regime)
    money = finish_money(rng, basket, regime)
    who = parties(rng, t, money, groups=plan.groups, regime=regime)
    times = doc_times(rng, t, plan.groups)
    number = numbered(preset.prefix + preset.day, np.arange(n) + 1, 9)
    orders = Orders(number=number, times=times, parties=who, items=basket.items, money=money)
    items = item_columns(rng, orders.items, money)
    docs = fragments(rng, orders, items_json=render_all_items(items, orders.items.start), day0=preset.midnight)
    ctx = context(rng, orders, docs, items=items, seed=spec.seed, first_day=preset.first_day)
    return Draft(spec, orders, plan, docs, fault_messages(ctx, plan.faulted()))


def _layout(rng: np.random.Generator, draft: Draft) -> Layout:
    """Sort each file and choose its invalid messages."""
    files, dead = [], []
    for f, base_t in enumerate(draft.orders.times.documents()):
        fo = arrange(f, base_t, draft.plan.clean, draft.messages)
        sample = render(TEMPLATES[f], draft.fragments.of(f), np.array([0]))[0]
        count = int(round(len(fo.order) * draft.spec.invalid_rate))
        fo, truth = add_invalid(rng, fo, count=count, sample=sample, day0=draft.spec.preset.midnight)
        files.append(fo)
        dead += truth
    return Layout(tuple(files), dead)


def _write_files(outdir: Path, layout: Layout, draft: Draft) -> list[BaseProcess]:
    """Write the three files, or start the processes writing them (see `_join`)."""
    outdir.mkdir(parents=True, exist_ok=True)
    jobs = [(outdir / name, fo, draft.fragments.of(fo.file)) for name, fo in zip(FILE_NAMES, layout.files, strict=True)]
    if draft.orders.count < _PARALLEL_FROM:
        for job in jobs:
            write_file(*job)
        return []
    # The files are independent and all randomness is drawn above: write them in forked
    # children (the columns are shared copy-on-write), the bytes are the same either way.
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=write_file, args=job) for job in jobs]
    for w in workers:
        w.start()
    return list(workers)


def _write_truth(outdir: Path, labels: list[str], dead_letters: list[dict[str, Any]]) -> None:
    (outdir / "labels.jsonl").write_bytes(("\n".join(labels) + "\n").encode() if labels else b"")
    (outdir / "expected_deadletters.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in dead_letters))


def _join(workers: list[BaseProcess]) -> None:
    for w in workers:
        w.join()
    if any(w.exitcode != 0 for w in workers):
        raise RuntimeError("writing a trace file failed")


def _info(draft: Draft, layout: Layout) -> dict[str, Any]:
    """trace.json: the arguments, what was generated, and the time span."""
    spec, plan, regime = draft.spec, draft.plan, draft.spec.regime
    counts = {name: plan.count(name) for name in KINDS}
    counts["annual-quota-orders"] = sum(len(g) for g in plan.groups)
    invalid = {k: sum(1 for x in layout.dead_letters if x["kind"] == k) for k in INVALID_KINDS}
    last = max(int(x.max()) for x in draft.orders.times.documents())
    if draft.messages:
        last = max(last, max(m.time for ms in draft.messages.values() for m in ms))
    day0 = spec.preset.midnight
    return {
        "seed": spec.seed, "preset": spec.preset.name, "orders": spec.orders, "regime": {"name": regime.name,
        "singleLimitFen": regime.single_limit_fen, "annualLimitFen": regime.annual_limit_fen,
        "taxPermille": regime.tax_permille}, "faultRate": spec.fault_rate, "invalidRate": spec.invalid_rate,
        "faults": counts, "annualQuotaBuyers": len(plan.groups), "invalid": invalid,
        "lines": {name: fo.lines for name, fo in zip(FILE_NAMES, layout.files, strict=True)},
        "timeSpan": {"first": app_times(np.array([0]), day0)[0], "last": app_times(np.array([last]), day0)[0]},
        "inspection": {"seed": INSPECTION_SEED, "rate": INSPECTION_RATE},
    }  # fmt: skip
