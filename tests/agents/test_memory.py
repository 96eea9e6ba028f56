"""The worker's cyclic GC settings (agents/memory.py): thresholds, timing, the freeze at ready; glibc's arenas."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agents.memory import CyclicGC, mallinfo
from clearance.settings import Settings


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_install_raises_the_young_threshold_and_keeps_the_ratios(restored: None) -> None:
    before = gc.get_threshold()
    _, middle, old = before
    collector = CyclicGC(50_000)
    collector.install()
    collector.install()  # twice: one callback, the first thresholds remembered
    assert gc.get_threshold() == (50_000, middle, old)
    assert gc.callbacks.count(collector._timed) == 1
    collector.uninstall()
    assert gc.get_threshold() == before
    assert collector._timed not in gc.callbacks


def test_zero_keeps_cpythons_thresholds(restored: None) -> None:
    before = gc.get_threshold()
    collector = CyclicGC(0)
    collector.install()
    try:
        assert gc.get_threshold() == before
    finally:
        collector.uninstall()


def test_collections_are_counted_and_timed_by_generation(restored: None) -> None:
    collector = CyclicGC(50_000)
    collector.install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        collector.uninstall()
    assert collector.collections[0] >= 1
    assert collector.collections[2] >= 2
    assert all(seconds >= 0.0 for seconds in collector.seconds)
    assert collector.seconds[2] > 0.0
    gc.collect(2)  # after uninstall: no longer counted
    assert collector.collections[2] == 2


def test_freeze_moves_what_lives_out_of_the_walks_once(restored: None) -> None:
    kept = [[n] for n in range(1000)]  # objects the collector tracks
    collector = CyclicGC(50_000)
    frozen_before = gc.get_freeze_count()
    collector.freeze()
    frozen = gc.get_freeze_count()
    assert frozen >= frozen_before + len(kept)
    collector.freeze()  # once only
    assert gc.get_freeze_count() == frozen
    assert collector.frozen


def test_the_young_threshold_is_a_setting() -> None:
    assert Settings().gc_young_threshold == 50_000
    assert Settings().with_overrides(gc_young_threshold=0).gc_young_threshold == 0
    with pytest.raises(ValueError, match="GC_YOUNG_THRESHOLD"):
        Settings().with_overrides(gc_young_threshold=-1)


@pytest.mark.parametrize(("env", "applied"), [({}, True), ({"MALLOC_ARENA_MAX": "4"}, False)])
def test_limit_arenas_applies_unless_the_environment_sets_it(env: dict[str, str], applied: bool) -> None:
    """In a fresh interpreter (mallopt changes the process for good): glibc accepts the limit,
    and an operator's MALLOC_ARENA_MAX wins over it."""
    if mallinfo() is None:
        pytest.skip("not glibc")
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    code = "from agents.memory import limit_arenas; print(limit_arenas())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == str(applied)
