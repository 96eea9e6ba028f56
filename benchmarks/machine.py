"""The machine a benchmark ran on: CPUs, CPU model, RAM, Python, Kafka and client versions."""

from __future__ import annotations

import array
import asyncio
import os
import platform
import time
from pathlib import Path
from typing import Any

import confluent_kafka
import numpy as np
import orjson

from ops.distribution import KAFKA_VERSION


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def describe() -> dict[str, Any]:
    """A JSON-able description of this machine and the software under test."""
    try:
        import faust

        faust_version = faust.__version__
    except ImportError:  # pragma: no cover - faust is a dependency
        faust_version = "absent"
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ramGB": _ram_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "librdkafka": confluent_kafka.libversion()[0],
        "confluentKafka": confluent_kafka.version()[0],
        "faust": faust_version,
    }


def random_cycle(n: int) -> tuple[array.array[int], int]:
    """n slots, each the index of the next: one cycle through every slot in a random order; and
    where it starts."""
    order = np.random.default_rng(7).permutation(n)
    following = np.empty(n, dtype=np.int64)
    following[order] = np.roll(order, -1)
    slots = array.array("q")
    slots.frombytes(following.tobytes())
    return slots, int(order[0])


def walk_ns(size: int, steps: int = 200_000) -> float:
    """Nanoseconds per read of a walk of dependent reads (each slot read names the next) through a
    random cycle over `size` bytes of slots, the interpreter's cost per step included; best of 3."""
    slots, first = random_cycle(max(size // 8, 2))
    best = float("inf")
    for _ in range(3):
        at = first
        start = time.perf_counter()
        for _ in range(steps):
            at = slots[at]
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e9


def memory_ns(far_bytes: int = 32 << 20, near_bytes: int = 256 << 10, steps: int = 200_000) -> float:
    """Nanoseconds a read from far memory costs over one from the caches: the walk over
    `far_bytes` less the walk over `near_bytes` (the interpreter's own cost per step).

    Why: on 4 December this host's reads beyond ~4 MB cost 150 to 315 ns each (a C walk: ~20 ns
    within 2 MB), and a document's parse took 25.5 us inside the worker against 6.2 us in a loop
    (RESULTS, "Where the worker's time goes on this host: memory"). The worker's working set is
    far larger than the caches, the floors' is not, so this figure moves c/f from host to host."""
    return max(walk_ns(far_bytes, steps) - walk_ns(near_bytes, steps), 0.0)


def host_speed(turns: int = 10_000, steps: int = 2_000_000, memory_steps: int = 200_000) -> dict[str, float]:
    """This host's speed now, for the kinds of Python work in the benchmarks (best of 7 and of 3).

    `loopNs`: nanoseconds per step of a bare `for` loop, the interpreter alone. `asyncioWaitUs`:
    microseconds per `asyncio.wait` over four futures (two tasks, two bare futures; the first done
    wins, the rest cancelled) on a fresh standard loop: what Faust's consumer does per message
    (mode's `wait_first`). `memoryNs`: what a read from far memory costs (`memory_ns`). They need
    not move together: on 4 December a new host ran the loop as fast as the old one and Faust's
    floor at a third of its speed (RESULTS, "The host since 3 December"), so a run records all
    three, and runs on different hosts are not compared."""

    def loop_ns() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            pass
        return (time.perf_counter() - start) / steps * 1e9

    async def waits() -> float:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        ready.set()

        async def done() -> int:
            return 1

        start = time.perf_counter()
        for _ in range(turns):
            futures = [
                asyncio.ensure_future(done()),
                asyncio.ensure_future(ready.wait()),
                loop.create_future(),
                loop.create_future(),
            ]
            _done, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
            for future in pending:
                future.cancel()
        await asyncio.sleep(0)  # let the cancelled ones finish before the loop closes
        return (time.perf_counter() - start) / turns * 1e6

    def wait_us() -> float:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(waits())
        finally:
            loop.close()

    return {
        "loopNs": round(min(loop_ns() for _ in range(7)), 1),  # 7 x ~60 ms: a blip of the host spans fewer
        "asyncioWaitUs": round(min(wait_us() for _ in range(3)), 1),
        "memoryNs": round(memory_ns(steps=memory_steps), 1),
    }


_FIGURES = (("asyncioWaitUs", "asyncio wait", "us"), ("loopNs", "loop", "ns/step"), ("memoryNs", "memory", "ns/read"))

# A host figure that moves more than this between a run's start and its end makes its ratios suspect
SPEED_MOVED = 0.15


def host_line(machine: dict[str, Any]) -> str:
    """The kernel and the host's speed at the run's start (and its end, "start->end"), when the run
    recorded them (runs before 4 December did not; the end since the same afternoon)."""
    parts = [f"kernel {machine['kernel']}"] if machine.get("kernel") else []
    speed, after = machine.get("speed") or {}, machine.get("speedAfter") or {}

    def figure(key: str) -> str:
        return f"{speed[key]:.0f}->{after[key]:.0f}" if key in after else f"{speed[key]:.0f}"

    if speed:
        parts.append(f"asyncio wait {figure('asyncioWaitUs')} us, loop {figure('loopNs')} ns/step")
    if "memoryNs" in speed:  # since the evening of 4 December
        parts[-1] += f", memory {figure('memoryNs')} ns/read"
    return ", ".join(parts)


def speeds_line(speeds: list[dict[str, float]]) -> str:
    """The host's speed at the start of each round of a run (`clearance bench --rounds`)."""
    waits = "/".join(f"{s['asyncioWaitUs']:.0f}" for s in speeds)
    loops = "/".join(f"{s['loopNs']:.0f}" for s in speeds)
    line = f"the host at each round's start: asyncio wait {waits} us, loop {loops} ns/step"
    if all("memoryNs" in s for s in speeds):
        line += ", memory " + "/".join(f"{s['memoryNs']:.0f}" for s in speeds) + " ns/read"
    return line


def speed_moved(machine: dict[str, Any]) -> str:
    """Which host figure moved by more than SPEED_MOVED between the run's start and its end ("" if none):
    the cases then ran at different speeds, and "the same run" does not make their ratios fair."""
    speed, after = machine.get("speed") or {}, machine.get("speedAfter") or {}
    moved = [
        f"{name} {speed[key]:.0f} -> {after[key]:.0f} {unit}"
        for key, name, unit in _FIGURES
        if key in speed and key in after and abs(after[key] - speed[key]) > SPEED_MOVED * speed[key]
    ]
    return ", ".join(moved)


def one_line(machine: dict[str, Any]) -> str:
    host = host_line(machine)
    return (
        f"{machine['nproc']} CPU ({machine['cpu']}), {machine['ramGB']} GB RAM, Python {machine['python']}, "
        f"Kafka {machine['kafka']}, librdkafka {machine['librdkafka']}, faust-streaming {machine['faust']}"
        + (f"; {host}" if host else "")
    )


def record(path: Path, machine: dict[str, Any], result: dict[str, Any]) -> None:
    """Print `result` as one JSON line and append it, with the machine and the time, to `path`."""
    print(orjson.dumps(result).decode(), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(orjson.dumps({"machine": machine, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}) + b"\n")
