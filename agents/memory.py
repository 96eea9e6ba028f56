"""The process's native memory as glibc sees it, giving its free memory back, and the cyclic GC.

`mallinfo2()` splits what the C allocator holds (RocksDB, librdkafka, Python's large
objects and arenas) into memory in use, free memory it keeps for later, and mmapped
blocks; `malloc_trim(0)` returns the free memory of every arena to the system. Both are
glibc's: elsewhere (musl, macOS) `mallinfo` returns None and `trim` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time

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
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
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


_M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2  # as the Dockerfile's MALLOC_ARENA_MAX


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` glibc malloc arenas from now on, unless MALLOC_ARENA_MAX is set.

    glibc gives each thread that allocates under contention an arena of its own, up to 8
    per core, and each keeps its own free memory and peak: RocksDB's background threads,
    librdkafka's and aiokafka's. Call it before those threads start. True if applied."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))


class CyclicGC:
    """Python's cyclic garbage collector, set for a long-running worker, and timed.

    With CPython's default thresholds (700, 10, 10) a worker under load ran 3,800 young,
    350 middle and 37 full collections for 60,000 input messages: 7 to 8 s, about a sixth
    of its CPU (benchmarks/RESULTS.md, issue 12). Each full collection walks every live
    object: Faust's and aiokafka's, the buffered events, the join's and the quota's
    states. Almost none of them is cyclic garbage, so the walks free nearly nothing.
    `install` raises the young generation's threshold (`young` allocations between young
    collections) and keeps CPython's ratios above it, so full collections still run, only
    rarer; `freeze` moves what start-up built (modules, Faust's services, recovered state)
    out of every later walk. The collections and their seconds per generation are counted
    for /metrics (`gc_collections`, `gc_seconds`)."""

    def __init__(self, young: int) -> None:
        self.young = young
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.frozen = False
        self._began = 0.0
        self._before: tuple[int, int, int] | None = None

    def install(self) -> None:
        if self._before is None:
            self._before = gc.get_threshold()
            if self.young > 0:
                gc.set_threshold(self.young, *self._before[1:])
            gc.callbacks.append(self._timed)

    def uninstall(self) -> None:
        """CPython's thresholds back and no more timing (what is frozen stays frozen)."""
        if self._before is not None:
            gc.set_threshold(*self._before)
            gc.callbacks.remove(self._timed)
            self._before = None

    def freeze(self) -> None:
        """Once, when the worker is ready: collect, then leave every surviving object out of later walks."""
        if not self.frozen:
            self.frozen = True
            gc.collect()
            gc.freeze()

    def _timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            generation = info.get("generation", 2)
            self.collections[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._began
