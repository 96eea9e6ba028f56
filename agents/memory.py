"""The process's native memory as glibc sees it, and giving its free memory back.

`mallinfo2()` splits what the C allocator holds (RocksDB, librdkafka, Python's large
objects and arenas) into memory in use, free memory it keeps for later, and mmapped
blocks; `malloc_trim(0)` returns the free memory of every arena to the system. Both are
glibc's: elsewhere (musl, macOS) `mallinfo` returns None and `trim` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("clearance.worker")


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes wants a plain list
        ("arena", ctypes.c_size_t),
        ("ordblks", ctypes.c_size_t),
        ("smblks", ctypes.c_size_t),
        ("hblks", ctypes.c_size_t),
        ("hblkhd", ctypes.c_size_t),
        ("usmblks", ctypes.c_size_t),
        ("fsmblks", ctypes.c_size_t),
        ("uordblks", ctypes.c_size_t),
        ("fordblks", ctypes.c_size_t),
        ("keepcost", ctypes.c_size_t),
    ]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError, TypeError):
        return None
    return libc


_LIBC = _libc()


def mallinfo() -> dict[str, int] | None:
    """Bytes the allocator holds: in use (heap), free but kept (heap), mmapped; None without glibc."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return {"in_use": int(info.uordblks), "free": int(info.fordblks), "mmapped": int(info.hblkhd)}


def trim() -> bool:
    """Give the allocator's free memory back to the system (`malloc_trim(0)`); True if some was."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
