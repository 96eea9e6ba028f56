"""RocksDB options for the worker's tables: one memory bound for every database of the process.

Faust's RocksDB store opens one database per table partition (36 at 12 partitions), each
with options of its own: its own block cache, its own memtables, and SST index and filter
blocks held by the table readers outside any cache. So the worker's memory grew with every
database that filled its own bounds and with the data written (issue 13). Here every
database of the process shares

- one LRU block cache (`SHARED_CACHE_BYTES`) for data blocks *and* index and filter blocks
  (`cache_index_and_filter_blocks`; L0's pinned, as RocksDB advises, still counted in it);
- one write-buffer manager that charges every memtable to that same cache and flushes the
  largest memtable once all of them together pass `WRITE_BUFFERS_BYTES`.

So RocksDB's buffers stay within `SHARED_CACHE_BYTES` in total, whatever the number of
partitions or the orders ever processed. A partition's database is opened with its default
column family's options passed explicitly: without that, rocksdict reopens an existing
database with the options it loads from the database's OPTIONS file and a new 8 MiB block
cache of its own (a restart or a rebalance would lose the shared cache).

How the options get in: Faust's `Store.rocksdb_options` (its documented per-store RocksDB
configuration, a `RocksDBOptions`) is replaced by `SharedRocksDBOptions` before any
database is opened. `memory()` gets the open databases from
`faust_internals.open_databases`, where every Faust-private name lives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from agents.faust_internals import open_databases

_MIB = 1024 * 1024
# Everything RocksDB keeps in memory for the worker's tables, all partitions together
# (CLEARANCE_ROCKSDB_CACHE_MB; benchmarks/rocksdb_cache.py measures 16 against 32 MiB).
SHARED_CACHE_BYTES = 16 * _MIB
# The memtables' share of it: past this sum the largest memtable is flushed. 3/4: with 3/8
# (6 MiB) memtables are flushed at half the total, and the worker spent 7 to 11% more CPU per
# event under a backlog (case c, benchmarks/RESULTS.md); blocks get what memtables leave.
WRITE_BUFFERS_BYTES = 12 * _MIB
# Per database: a memtable is flushed at 1 MiB (at 12 partitions x 3 tables the manager's
# bound, not this one, decides when the busy ones are flushed).
WRITE_BUFFER_BYTES = 1 * _MIB
MAX_WRITE_BUFFERS = 2
TARGET_FILE_BYTES = 8 * _MIB
BLOOM_BITS_PER_KEY = 10


@dataclass
class SharedMemory:
    """The block cache and the write-buffer manager of one process, shared by every database."""

    cache_bytes: int = SHARED_CACHE_BYTES
    write_buffers_bytes: int = WRITE_BUFFERS_BYTES
    cache: rocksdict.Cache = field(init=False)
    write_buffers: rocksdict.WriteBufferManager = field(init=False)
    tables: list[Any] = field(default_factory=list)  # the tables given the options (for `memory`)

    @classmethod
    def of_megabytes(cls, megabytes: int) -> SharedMemory:
        """A cache of `megabytes` MiB (CLEARANCE_ROCKSDB_CACHE_MB), the memtables' share in the same proportion."""
        return cls(megabytes * _MIB, megabytes * _MIB * WRITE_BUFFERS_BYTES // SHARED_CACHE_BYTES)

    def __post_init__(self) -> None:
        self.cache = rocksdict.Cache(self.cache_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.write_buffers_bytes, False, self.cache
        )


class SharedRocksDBOptions(RocksDBOptions):
    """Faust's `RocksDBOptions` with the process's shared cache and write-buffer manager."""

    def __init__(self, shared: SharedMemory, **options: Any) -> None:
        options.setdefault("write_buffer_size", WRITE_BUFFER_BYTES)
        options.setdefault("max_write_buffer_number", MAX_WRITE_BUFFERS)
        options.setdefault("target_file_size_base", TARGET_FILE_BYTES)
        options.setdefault("bloom_filter_size", BLOOM_BITS_PER_KEY)
        options.setdefault("block_cache_size", shared.cache_bytes)
        super().__init__(use_rocksdict=True, **options)
        self.shared = shared

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.shared.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.shared.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options

    def open(self, path: Path, *, read_only: bool = False) -> rocksdict.Rdict:
        """Open (or create) one partition's database; as Faust's, but with the default column
        family's options given, so that a reopen keeps them (see the module's docstring)."""
        options = self.as_options()
        access = rocksdict.AccessType.read_write() if self.ttl is None else rocksdict.AccessType.with_ttl(self.ttl)
        db = rocksdict.Rdict(str(path), options=options, column_families={"default": options}, access_type=access)
        db.set_read_options(rocksdict.ReadOptions())
        return db


def share_memory(tables: Iterable[Any], shared: SharedMemory, **options: Any) -> None:
    """Give every table's RocksDB store the shared options; call before any database is opened."""
    for table in tables:
        store = table.data
        store.rocksdb_options = SharedRocksDBOptions(shared, **options)
        shared.tables.append(table)


# Per database, summed over the open ones ("rocksdb.block-cache-usage" is the shared cache's).
_PER_DB = {
    "memtables": "rocksdb.cur-size-all-mem-tables",
    "table_readers": "rocksdb.estimate-table-readers-mem",
}


def memory(shared: SharedMemory) -> dict[str, int]:
    """RocksDB's own memory figures, bytes: the shared cache's usage (memtables charged to it
    included) and pinned part, the memtables and the table readers outside the cache, summed
    over the open databases, and how many are open."""
    totals = dict.fromkeys(_PER_DB, 0)
    opened = 0
    for table in shared.tables:
        for db in open_databases(table):
            opened += 1
            for kind, name in _PER_DB.items():
                try:
                    totals[kind] += int(db.property_int_value(name) or 0)
                except Exception:  # noqa: BLE001, S112 - closed meanwhile (a rebalance)
                    continue
    return {
        "block_cache": shared.cache.get_usage(),
        "block_cache_pinned": shared.cache.get_pinned_usage(),
        "write_buffers": shared.write_buffers.get_usage(),
        **totals,
        "databases": opened,
    }
