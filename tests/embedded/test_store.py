"""One store suite over MemoryStore and RocksStore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded.store import RocksStore
from pipeline.store import MemoryStore, Store


@pytest.fixture(params=["memory", "rocksdict"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    rocks = RocksStore(tmp_path / "db", batch_size=3)
    yield rocks
    rocks.close()


def test_get_put_delete(store: Store) -> None:
    assert store.get(b"k") is None
    store.put(b"k", b"v1")
    store.put(b"k", b"v2")
    assert store.get(b"k") == b"v2"
    store.delete(b"k")
    store.delete(b"absent")
    assert store.get(b"k") is None and len(store) == 0


def test_many_keys_across_batches(store: Store) -> None:
    for i in range(50):
        store.put(f"k{i}".encode(), f"v{i}".encode())
    for i in range(0, 50, 2):
        store.delete(f"k{i}".encode())
    assert len(store) == 25
    assert dict(store.items())[b"k1"] == b"v1"


def test_rocks_state_survives_reopen(tmp_path: Path) -> None:
    first = RocksStore(tmp_path / "db")
    first.put(b"order", b"state")
    first.close()
    again = RocksStore(tmp_path / "db")
    assert again.get(b"order") == b"state"
    again.close()
