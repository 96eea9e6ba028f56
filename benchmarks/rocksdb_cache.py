"""The worker's RocksDB cache against 7 days of retained orders (issue 13, item 3).

Every database of a worker shares one block cache (`agents.stores`), and the SST files'
index and filter blocks are cached in it, beside the data blocks and the memtables' charge.
This measures what a cache size costs and gives when the tables hold a park's week: N
retained order keys (default 4,500,000, 650,000 a day for 7 days) over 12 partitions, with
values of the size the worker writes, through the worker's own options (`agents.stores`).

The databases are filled once and compacted, then copied and reopened with each cache size
and put through the same workload: per event one `get` and one `put` on the event's
partition, a third of them for a new order (the `get` misses: the filters decide) and two
thirds for one of the last 20,000 orders (a hit in a recent file or a memtable). Measured:
events/s, the cache's usage and the process's resident memory after the workload, and the
files' data, index and filter sizes.

    python -m benchmarks.rocksdb_cache [--keys 4500000] [--events 300000] [--cache-mb 16 32]

Prints one JSON object per run and appends it to --results
(benchmarks/results/rocksdb-cache.jsonl). A block the cache misses is read from the OS page
cache or the disk, and checksummed and parsed again; the workload's puts write RocksDB's log
and its flushes and compactions write files, as a worker's do. So the disk's background work
varies the figures: run the sizes in both orders (`--cache-mb 32 16 8 8 16 32`).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import rocksdict

from agents.stores import SharedMemory, SharedRocksDBOptions
from benchmarks.machine import describe, record
from benchmarks.measure import vm_kb
from benchmarks.restore import JOIN_VALUE_BYTES

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 12
RECENT = 20_000
_MIB = 1024 * 1024
# Summed over the files, from RocksDB's "rocksdb.aggregated-table-properties".
_SIZES = {"data block size": "dataMB", "index block size": "indexMB", "filter block size": "filterMB"}


def _key(i: int, scattered: bool) -> bytes:
    """Order i's number: in order (one platform's sequence), or scattered over the key space,
    as the numbers of many platforms interleave: then a new order's number falls inside the
    key range of old files, and its `get` must ask their filters."""
    return b"HZ%016d" % ((i * 2654435761) % 10**16 if scattered else i)


def _value(i: int) -> bytes:
    body = b'{"orderNo":"HZ%016d","decided":true,"guids":["%032x"],"pad":"' % (i, i * 2654435761)
    return body + b"x" * (JOIN_VALUE_BYTES - len(body) - 2) + b'"}'


def _rss_mb() -> float:
    return round(vm_kb(os.getpid(), "VmRSS") / 1024, 1)


def _open(root: Path, shared: SharedMemory) -> list[rocksdict.Rdict]:
    options = SharedRocksDBOptions(shared)
    return [options.open(root / f"p{p}") for p in range(PARTITIONS)]


def _close(dbs: list[rocksdict.Rdict]) -> None:
    for db in dbs:
        db.close()
    dbs.clear()
    gc.collect()


def fill(root: Path, keys: int, *, scattered: bool) -> dict[str, Any]:
    """N keys over the partitions (key i on partition i mod 12), flushed and compacted."""
    shared = SharedMemory()
    dbs = _open(root, shared)
    started = time.perf_counter()
    for i in range(keys):
        dbs[i % PARTITIONS].put(_key(i, scattered), _value(i))
    for db in dbs:
        db.flush()
        db.compact_range(None, None)
    seconds = time.perf_counter() - started
    sizes = dict.fromkeys(_SIZES, 0)
    for db in dbs:
        for item in (db.property_value("rocksdb.aggregated-table-properties") or "").split(";"):
            name, _, number = item.partition("=")
            kind = name.strip().split(" (")[0]  # "index block size (user-key? 1, delta-value? 1)"
            if kind in _SIZES:
                sizes[kind] += int(number.strip())
    _close(dbs)
    return {"fillSeconds": round(seconds, 1), **{_SIZES[k]: round(v / _MIB, 1) for k, v in sizes.items()}}


def workload(root: Path, keys: int, events: int, cache_mb: int, *, scattered: bool) -> dict[str, Any]:
    """The same events on every run: a third new orders, two thirds one of the last 20,000."""
    shared = SharedMemory.of_megabytes(cache_mb)
    rss_open = _rss_mb()
    dbs = _open(root, shared)
    rng = random.Random(11)  # noqa: S311 - a workload, not a secret
    next_key = keys
    hits = misses = 0
    started = time.perf_counter()
    for _ in range(events):
        if rng.random() < 1 / 3:
            i = next_key
            next_key += 1
        else:
            i = next_key - 1 - rng.randrange(RECENT)
        db = dbs[i % PARTITIONS]
        key = _key(i, scattered)
        if db.get(key) is None:
            misses += 1
        else:
            hits += 1
        db.put(key, _value(i))
    seconds = time.perf_counter() - started
    cache = shared.cache
    result = {
        "keysOrder": "scattered" if scattered else "sequential",
        "cacheMB": cache_mb,
        "keys": keys,
        "events": events,
        "hits": hits,
        "misses": misses,
        "eventsPerSecond": round(events / seconds),
        "cacheUsageMB": round(cache.get_usage() / _MIB, 1),
        "cachePinnedMB": round(cache.get_pinned_usage() / _MIB, 1),
        "tableReadersMB": round(
            sum(int(db.property_int_value("rocksdb.estimate-table-readers-mem") or 0) for db in dbs) / _MIB, 1
        ),
        "rssGrowthMB": round(_rss_mb() - rss_open, 1),
    }
    _close(dbs)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rocksdb_cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=4_500_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--cache-mb", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--keys-order", choices=("scattered", "sequential"), default="scattered")
    parser.add_argument("--work", type=Path, default=None, help="where the databases go (a temporary directory)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "rocksdb-cache.jsonl")
    args = parser.parse_args(argv)
    scattered = args.keys_order == "scattered"
    work = args.work or Path(tempfile.mkdtemp(prefix="clearance-rocksdb-cache-"))
    machine = describe()
    try:
        filled = fill(work / "filled", args.keys, scattered=scattered)
        for cache_mb in args.cache_mb:
            # Each run starts from the filled files: the workload's writes are undone.
            run_root = work / f"cache-{cache_mb}"
            shutil.rmtree(run_root, ignore_errors=True)
            shutil.copytree(work / "filled", run_root)
            result = {**workload(run_root, args.keys, args.events, cache_mb, scattered=scattered), **filled}
            shutil.rmtree(run_root, ignore_errors=True)
            record(args.results, machine, result)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
