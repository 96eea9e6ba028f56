"""`clearance run --input DIR --output DIR`: the whole pipeline over trace files, no broker.

Reads orders.jsonl, payments.jsonl and waybills.jsonl (any may be absent), merges
them by appTime (ties: orders, payments, waybills, then line order) under one event
time, runs the core with state in rocksdict, and writes matched.jsonl,
flagged.jsonl and deadletter.jsonl: the same records the Kafka pipeline publishes.
At the end of the input every open window closes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import IO, Any

import orjson

from clearance.clock import wall_ms
from clearance.progress import Progress
from clearance.settings import Settings
from clearance.traces import TraceError, read_lines, trace_files
from embedded.store import RocksStore
from monitor.report import write_report
from pipeline.codec import encode_declaration
from pipeline.config import RulesConfig
from pipeline.engine import Engine, Outputs
from pipeline.feed import feed
from pipeline.records import DocKind
from pipeline.store import MemoryStore, Store

log = logging.getLogger("clearance.embedded")

OUTPUT_FILES = ("matched.jsonl", "flagged.jsonl", "deadletter.jsonl")
_LOGGED_ERRORS = 10


@dataclass
class Summary:
    """Counts of one run."""

    documents: int = 0
    dead_letters: int = 0
    internal_errors: int = 0
    redeliveries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return self.documents + self.dead_letters

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "documents": self.documents,
            "deadLetters": self.dead_letters,
            "internalErrors": self.internal_errors,
            "redeliveries": self.redeliveries,
            "declarations": sum(self.statuses.values()),
            "statuses": dict(sorted(self.statuses.items())),
            "reasons": dict(self.reasons.most_common()),
            "seconds": round(self.seconds, 3),
            "eventsPerSecond": round(self.rate, 1),
        }

    def render(self) -> str:
        lines = [
            f"messages    {self.messages:>10,}  ({self.rate:,.0f} events/s in {self.seconds:.2f} s)",
            f"declarations{sum(self.statuses.values()):>10,}",
        ]
        lines += [f"  {status:<10}{count:>10,}" for status, count in sorted(self.statuses.items())]
        lines.append(f"dead letters{self.dead_letters:>10,}  (internal errors {self.internal_errors})")
        lines.append(f"redelivered {self.redeliveries:>10,}  (ignored, same guid)")
        if self.reasons:
            lines.append("reasons")
            lines += [f"  {code:<28}{count:>10,}" for code, count in self.reasons.most_common()]
        return "\n".join(lines)


class _Sink:
    """The three output files, the summary's counts and the progress bar (`pipeline.feed.Sink`)."""

    def __init__(self, out_dir: Path, summary: Summary, bar: Progress) -> None:
        self.files: dict[str, IO[bytes]] = {name: (out_dir / name).open("wb") for name in OUTPUT_FILES}
        self.summary = summary
        self.bar = bar

    def write(self, out: Outputs) -> None:
        summary = self.summary
        matched, flagged = self.files["matched.jsonl"].write, self.files["flagged.jsonl"].write
        statuses = summary.statuses
        for declaration in out.declarations:
            if declaration.reasons:  # not `matched`: a property call per declaration
                flagged(encode_declaration(declaration) + b"\n")
                summary.reasons.update(declaration.reasons)
            else:
                matched(encode_declaration(declaration) + b"\n")
            statuses[declaration.status] += 1
        for record in out.dead_letters:
            self.files["deadletter.jsonl"].write(orjson.dumps(record) + b"\n")
        summary.dead_letters += len(out.dead_letters)
        for exc in out.internal_errors:
            summary.internal_errors += 1
            if summary.internal_errors <= _LOGGED_ERRORS:  # then only counted: a bug must not flood the log
                log.error("internal error while processing a message (dead-lettered)", exc_info=exc)

    def progress(self, done_bytes: int) -> None:
        self.bar.update(done_bytes)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def run_trace(
    input_dir: Path,
    output_dir: Path,
    config: RulesConfig,
    *,
    topics: dict[DocKind, str] | None = None,
    state_dir: Path | None = None,
    memory: bool = False,
    progress: bool = False,
    cache_size: int = 200_000,
) -> Summary:
    """Run one trace directory end to end and return its summary."""
    present = trace_files(input_dir)
    topic_of = topics or Settings().kind_topics
    output_dir.mkdir(parents=True, exist_ok=True)
    total = sum(path.stat().st_size for _, path in present)
    scratch = None if memory or state_dir else Path(tempfile.mkdtemp(prefix="clearance-state-"))
    stores: list[Store] = []
    try:
        join_store, quota_store = _stores(memory, state_dir or scratch)
        stores = [join_store, quota_store]
        engine = Engine(config, join_store, quota_store, cache_size=cache_size, empty=True)  # new stores
        bar = Progress(total, "clearance run", enabled=progress)
        # Without --state-dir the state is thrown away afterwards: no point writing the cache out.
        return _run(engine, present, topic_of, output_dir, bar, keep_state=state_dir is not None)
    finally:
        for store in stores:
            if isinstance(store, RocksStore):
                store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _stores(memory: bool, state_dir: Path | None) -> tuple[Store, Store]:
    if memory or state_dir is None:
        return MemoryStore(), MemoryStore()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    return RocksStore(state_dir / "join"), RocksStore(state_dir / "quota")


def _run(
    engine: Engine,
    present: list[tuple[DocKind, Path]],
    topic_of: dict[DocKind, str],
    output_dir: Path,
    bar: Progress,
    *,
    keep_state: bool = True,
) -> Summary:
    summary = Summary()
    sink = _Sink(output_dir, summary, bar)
    started = time.perf_counter()
    done_bytes = 0
    # The cyclic GC off while the trace runs: the core's values (tuples, dicts, strings)
    # form no reference cycles, so it frees nothing here, but its full collections walk
    # every cached state again and again: 25% of the CPU time of a 300,000-line trace
    # (issue 12). Reference counting still frees everything; the GC is back on after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        files = [(kind, topic_of[kind], _lines(path)) for kind, path in present]
        summary.documents, done_bytes = feed(engine, files, sink, time.time_ns)
        sink.write(engine.close_all(wall_ms()))
        if keep_state:
            engine.flush()
    finally:
        sink.close()
        if gc_was_enabled:
            # Everything allocated during the run is still in the young generation: the first
            # allocation after enable() would walk all of it (0.39 s, 5% of the CPU of a
            # 300,000-line trace) to free nothing. freeze() then unfreeze() moves it to the
            # oldest generation unscanned; full collections still see it later.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
    summary.redeliveries = engine.redeliveries
    summary.seconds = time.perf_counter() - started
    bar.close(done_bytes)
    return summary


def _lines(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The raw messages of a JSONL file, as `clearance.traces.read_lines` reads them.

    Read a megabyte at a time and split in C, rather than line by line and sliced: the same
    messages (a blank line is one too, a last empty one is not), a third of the cost. The
    lines of a chunk are handed on by `chain` in C, not by a generator's frame per line.
    """
    return chain.from_iterable(_chunks(path, chunk_size))


def _chunks(path: Path, chunk_size: int) -> Iterator[list[bytes]]:
    """The file's messages, a chunk's worth at a time."""
    try:
        handle = path.open("rb")
    except OSError:
        yield list(read_lines(path))  # raises its TraceError
        return
    with handle:
        rest = b""
        while True:
            try:
                chunk = handle.read(chunk_size)
            except OSError as exc:
                raise TraceError(f"cannot read {path}: {exc.strerror}") from exc
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield lines
        if rest:
            yield [rest]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearance run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path, help="trace directory (orders/payments/waybills.jsonl)")
    parser.add_argument("--output", required=True, type=Path, help="directory for matched/flagged/deadletter.jsonl")
    parser.add_argument(
        "--regime", choices=["2016", "2019"], help="limits and tax rate (default 2019, env CLEARANCE_REGIME)"
    )
    parser.add_argument("--window-hours", type=float, help="match window in hours of event time (default 24)")
    parser.add_argument(
        "--inspection-rate", type=float, help="share of clean declarations sent to X-ray (default 0.055)"
    )
    parser.add_argument("--inspection-seed", help="seed of the deterministic inspection sample")
    parser.add_argument("--single-limit", type=Decimal, help="single-transaction limit in CNY")
    parser.add_argument("--annual-limit", type=Decimal, help="annual limit per buyer in CNY")
    parser.add_argument("--tax-rate", type=Decimal, help="tax rate, e.g. 0.091")
    parser.add_argument("--state-dir", type=Path, help="keep the rocksdict state here (default: a temporary directory)")
    parser.add_argument("--memory", action="store_true", help="keep state in memory instead of rocksdict")
    parser.add_argument(
        "--cache-size", type=int, default=200_000, help="join states cached in front of the store (0: none)"
    )
    parser.add_argument(
        "--progress", choices=["auto", "always", "never"], default="auto", help="progress bar on stderr"
    )
    parser.add_argument("--quiet", action="store_true", help="no summary on stdout")
    parser.add_argument(
        "--report", type=Path, metavar="FILE.html", help="also write the floor's figures as a self-contained HTML page"
    )
    return parser


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().with_overrides(
            regime=args.regime,
            window_hours=args.window_hours,
            inspection_rate=args.inspection_rate,
            inspection_seed=args.inspection_seed,
            single_limit=args.single_limit,
            annual_limit=args.annual_limit,
            tax_rate=args.tax_rate,
        )
        config = settings.rules()
    except (ValueError, OSError) as exc:
        print(f"clearance run: {exc}", file=sys.stderr)
        return 2
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    try:
        summary = run_trace(
            args.input,
            args.output,
            config,
            topics=settings.kind_topics,
            state_dir=args.state_dir,
            cache_size=args.cache_size,
            memory=args.memory,
            progress=show,
        )
    except TraceError as exc:
        print(f"clearance run: {exc}", file=sys.stderr)
        return 2
    (args.output / "summary.json").write_bytes(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2))
    if args.report is not None:
        write_report(args.output, args.report, title=f"Clearance report: {args.input.name}")
    if not args.quiet:
        print(summary.render())
        print(f"output      {args.output}")
        if args.report is not None:
            print(f"report      {args.report}")
    return 0
