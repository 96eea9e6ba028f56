"""The runner's chunked line reader reads exactly what clearance.traces.read_lines reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearance.traces import read_lines
from embedded.runner import _lines


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"\n\n",
        b"a",
        b"a\n",
        b"a\nb",
        b"a\n\nb\n",
        b"a\r\nb\r\n",
        b"\xe8\xae\xa2\xe5\x8d\x95\n{}\n",
        b"x" * 50 + b"\n" + b"y" * 7 + b"\n\n" + b"z" * 33,
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 1 << 20])
def test_same_messages_as_read_lines(tmp_path: Path, content: bytes, chunk_size: int) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_bytes(content)
    assert list(_lines(path, chunk_size)) == list(read_lines(path))
