"""The state-store boundary: bytes in, bytes out, keyed by bytes.

The core never touches a database; shells pass a `Store`. `MemoryStore` serves
tests and small runs; `embedded.store.RocksStore` is the rocksdict one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Store(Protocol):
    """A key-value store of bytes. Implementations need not be thread-safe."""

    def get(self, key: bytes) -> bytes | None:
        """The value under key, or None."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Store value under key."""
        ...

    def delete(self, key: bytes) -> None:
        """Remove key (absent is fine)."""
        ...

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair."""
        ...

    def __len__(self) -> int:
        """The number of keys."""
        ...


class MemoryStore:
    """A dict-backed Store."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """The value under key, or None."""
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Store value under key."""
        # A right-sized copy: orjson.dumps returns bytes backed by a ~4 KiB allocation
        # whatever their length, so keeping its results would cost ~4 KiB per key.
        self._data[key] = memoryview(value).tobytes()

    def delete(self, key: bytes) -> None:
        """Remove key (absent is fine)."""
        self._data.pop(key, None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) pair."""
        return iter(list(self._data.items()))

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._data)
