"""RocksStore: the core's Store protocol over rocksdict (RocksDB), raw bytes mode.

Options are passed for the default column family *at open*, every time: rocksdict
forgets block-cache and bloom-filter settings when an existing DB is reopened
without them (DEVELOPERS.md). Writes go through a WriteBatch flushed every
`batch_size` operations (and on `flush`/`close`); reads see the pending batch
through a small overlay dict, so batching never changes what `get` returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, DBCompressionType, Options, Rdict, WriteBatch, WriteOptions

_DELETED = b""  # overlay marker; real values are never empty (codecs write JSON arrays)


def _options(cache_mb: int) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_compression_type(DBCompressionType.lz4())
    table = BlockBasedOptions()
    table.set_block_cache(Cache(cache_mb * 1024 * 1024))
    table.set_bloom_filter(10, False)
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_size(64 * 1024 * 1024)
    return opts


class RocksStore:
    """A Store over one RocksDB directory."""

    def __init__(self, path: str | Path, *, cache_mb: int = 64, batch_size: int = 2000) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        opts = _options(cache_mb)
        self._db = Rdict(str(path), options=opts, column_families={"default": opts})
        self._write_opts = WriteOptions()
        # The input (a trace file, or Kafka with its changelog) is the log, so no WAL.
        # rocksdict's stub declares disable_wal a method; at runtime it is a property.
        self._write_opts.disable_wal = True  # type: ignore[method-assign, assignment]
        self._batch = WriteBatch(raw_mode=True)
        self._pending: dict[bytes, bytes] = {}
        self._batch_size = batch_size

    def get(self, key: bytes) -> bytes | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending or None
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self._pending[key] = value
        self._maybe_flush()

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self._pending[key] = _DELETED
        self._maybe_flush()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        for key, value in self._db.items():
            if isinstance(key, bytes) and isinstance(value, bytes):
                yield key, value

    def __len__(self) -> int:
        self.flush()
        return sum(1 for _ in self._db.keys())  # noqa: SIM118  # Rdict iterates keys only via keys()

    def flush(self) -> None:
        if self._pending:
            self._db.write(self._batch, self._write_opts)
            self._batch = WriteBatch(raw_mode=True)
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._db.close()

    def _maybe_flush(self) -> None:
        if len(self._pending) >= self._batch_size:
            self.flush()
