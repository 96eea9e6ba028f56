"""Per-document parse cost: orjson.loads, msgspec into the bare Struct, and our parse_* (issue 12).

    .venv/bin/python -m benchmarks.bench_parsing [--trace DIR] [--lines 20000] [--parser FILE]

Each figure is the best of five passes (process CPU time) over the first `--lines` lines of each trace file,
in microseconds per document, invalid lines included (they cost what they cost). The
trace defaults to the demo's (`clearance generate` peak-hour, seed 11, 20,000 orders,
made in the system's temporary directory if absent). `--parser FILE` also times the
parse_* functions of another parsing module (e.g. an earlier version from git), loaded
from that file, next to the current one.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import orjson

from pipeline import parsing
from pipeline.documents import OrderDoc, PaymentDoc, WaybillDoc

KINDS = {"order": "orders.jsonl", "payment": "payments.jsonl", "waybill": "waybills.jsonl"}
DEFAULT_TRACE = Path(tempfile.gettempdir()) / "clearance-bench-parsing"
STRUCTS: dict[str, Any] = {"order": OrderDoc, "payment": PaymentDoc, "waybill": WaybillDoc}


def _lines(trace: Path, name: str, limit: int) -> list[bytes]:
    with (trace / name).open("rb") as handle:
        return [line.rstrip(b"\n") for _, line in zip(range(limit), handle, strict=False)]


def _per_doc_us(func: Callable[[bytes], object], lines: list[bytes], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()  # CPU time: other jobs on the machine inflate the wall clock
        for line in lines:
            try:
                func(line)
            except Exception:  # noqa: BLE001, S112 - invalid lines are part of the load
                continue
        best = min(best, time.process_time() - started)
    return round(best / len(lines) * 1e6, 2)


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_other_parsing", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(trace: Path, limit: int, other: ModuleType | None) -> dict[str, dict[str, float]]:
    """Microseconds per document of each decoder, per document kind."""
    results: dict[str, dict[str, float]] = {}
    for kind, name in KINDS.items():
        lines = _lines(trace, name, limit)
        row = {
            "orjson.loads": _per_doc_us(orjson.loads, lines),
            "msgspec Struct": _per_doc_us(msgspec.json.Decoder(STRUCTS[kind]).decode, lines),
            f"parse_{kind}": _per_doc_us(getattr(parsing, f"parse_{kind}"), lines),
        }
        if other is not None:
            row[f"parse_{kind} (--parser)"] = _per_doc_us(getattr(other, f"parse_{kind}"), lines)
        results[kind] = row
    return results


def ensure_trace(trace: Path) -> None:
    """Make the default trace in `trace` unless it holds one: `clearance generate` peak-hour,
    seed 11, 20,000 orders (also benchmarks/locality.py's)."""
    if not (trace / "orders.jsonl").exists():
        subprocess.run(
            [sys.executable, "-m", "clearance.cli", "generate", str(trace), "--preset", "peak-hour"]
            + ["--orders", "20000", "--seed", "11"],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--parser", type=Path, help="another parsing module's file, timed beside the current one")
    args = parser.parse_args(argv)
    ensure_trace(args.trace)
    results = measure(args.trace, args.lines, _load(args.parser) if args.parser else None)
    print(
        orjson.dumps(
            {"trace": str(args.trace), "lines": args.lines, "usPerDocument": results}, option=orjson.OPT_INDENT_2
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
