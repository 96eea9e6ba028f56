"""The core's memo caches, forgotten together.

Parsing remembers money values, times and ID checks it has seen (maps cleared when
full, `lru_cache`s): documents repeat them. Their entries are made all along a run, among
each event's short-lived objects, so the ones left after a backlog sit in arenas of
CPython's small-object allocator that the backlog filled, and an arena goes back to the
system only once nothing in it is alive. A long-running shell forgets them now and then
(the worker, before it gives memory back: agents/app.py); the next documents fill them
again. Measured after a 100,000-order backlog: ~4 MB of blocks and 6 of 223 arenas back
(benchmarks/RESULTS.md, "After a backlog"); the rest are pinned, it seems, by the latest
values of offsets, counters and timestamps (Faust's, aiokafka's, the worker's).
"""

from __future__ import annotations

from pipeline import idcard, money, parsing, timeconv


def forget() -> None:
    """Empty every memo cache of the core (results are unchanged: the functions are pure)."""
    money.forget()
    parsing.forget()
    timeconv.forget()
    idcard.is_valid_resident_id.cache_clear()
