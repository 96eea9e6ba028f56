"""The deadline index's full chunks on disk: a retained decided order costs no memory (issue 13).

A join partition's deadline index (pipeline/timeline.py) holds one entry per retained
decided order, 7 days of them at a park: ~30 bytes each in 64 KiB chunks, ~135 MB for 4.5
million orders. Only the run's front and back chunks are used in memory; `Spills` gives each
partition a `DiskSpill`, a first-in-first-out queue of the chunks between them in a RocksDB
database of its own (keys: a big-endian sequence number) under
`<CLEARANCE_DATA_DIR>/deadline-spill/p<partition>-<n>`. It shares the tables' block cache and
memtable budget (agents/stores.py), so what it keeps in memory is inside that one bound.

Nothing in it is state of record: the index is rebuilt from the join table whenever a
partition is assigned (agents/join.py `_rebuild`), so a spill starts empty every time it is
opened, and the directory is emptied when the worker starts (a crash leaves one behind).
No changelog, no write-ahead log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import rocksdict

from agents.stores import SharedMemory, SharedRocksDBOptions

_KEY_BYTES = 8
SPILL_DIR = "deadline-spill"  # under CLEARANCE_DATA_DIR


class DiskSpill:
    """One partition's spilled chunks: `put` at the back, `take` from the front."""

    __slots__ = ("_db", "_path", "_next_in", "_next_out")

    def __init__(self, path: Path, options: SharedRocksDBOptions) -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = options.open(path)
        write = rocksdict.WriteOptions()
        write.disable_wal = True  # type: ignore[assignment,method-assign]  # a property; the stub says method
        self._db.set_write_options(write)
        self._next_in = 0
        self._next_out = 0

    def put(self, chunk: bytes) -> None:
        self._db.put(self._next_in.to_bytes(_KEY_BYTES, "big"), chunk)
        self._next_in += 1

    def take(self) -> bytes:
        if self._next_out >= self._next_in:
            raise IndexError("take from an empty spill")
        key = self._next_out.to_bytes(_KEY_BYTES, "big")
        chunk = self._db.get(key)
        if chunk is None:  # RocksDB lost a write it acknowledged: the index would be wrong
            raise RuntimeError(f"deadline spill {self._path}: chunk {self._next_out} missing")
        self._db.delete(key)
        self._next_out += 1
        return bytes(chunk)

    def __len__(self) -> int:
        return self._next_in - self._next_out

    def close(self) -> None:
        """Close and delete it (its partition was forgotten; a stopped worker's go at the next start)."""
        self._db.close()
        shutil.rmtree(self._path, ignore_errors=True)


class Spills:
    """Opens each partition's spill under `root`; empties `root` first."""

    def __init__(self, root: Path, shared: SharedMemory) -> None:
        shutil.rmtree(root, ignore_errors=True)
        self.root = root
        self.options = SharedRocksDBOptions(shared)
        self.opened = 0

    def open(self, partition: int) -> DiskSpill:
        """A new, empty spill for `partition` (a directory of its own: the one it replaces
        may not be closed yet)."""
        self.opened += 1
        return DiskSpill(self.root / f"p{partition}-{self.opened}", self.options)
