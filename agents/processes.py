"""`clearance worker --processes N`: N Faust workers of one consumer group on this machine.

The supervisor runs no Faust itself. It starts N `clearance worker` processes with
CLEARANCE_PROCESSES=1, each with its own data directory (`$CLEARANCE_DATA_DIR/p0` ..
`pN-1`) and a free web port on 127.0.0.1, and while they import Faust it checks the broker
and creates the internal topics once (a failure is one line and exit 1, as for one worker).
The processes wait at a start gate (`StartGate`) until that check has passed and all of
them are there, so they join the consumer group together. Its own web port
(CLEARANCE_WEB_PORT, CLEARANCE_WEB_BIND) answers for all of them (agents/rollup.py).

Policy, decided here:

* SIGTERM or SIGINT: SIGTERM to every process (a clean Faust stop each), wait for all;
  exit 0 when every one exited 0. A second signal kills them (SIGKILL).
* No process is ever restarted. When one exits while the supervisor is not stopping,
  the supervisor logs it at ERROR with its exit code, stops the others (SIGTERM, as
  above) and exits non-zero (that exit code, 1 if it was 0, 128 + N for a signal N).
  Whoever restarts the supervisor (systemd, Docker's restart policy, Kubernetes) sees the
  failure; their restart is logged.
* A process never outlives the supervisor: each asks the kernel for SIGTERM when its
  parent dies (Linux `PR_SET_PDEATHSIG`), so a `kill -9` of the supervisor stops them
  cleanly too, and each one's stop deadline (CLEARANCE_STOP_TIMEOUT_SECONDS,
  agents/deadline.py) ends it even when that stop cannot reach the broker. They run in
  their own process group: a terminal's Ctrl-C reaches only the supervisor, which
  forwards it once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

from agents.rollup import Rollup, Server
from clearance.settings import Settings

log = logging.getLogger("clearance.processes")

WORKER_COMMAND = (sys.executable, "-m", "clearance.cli", "worker")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One worker process: its name (p0, p1, ...), command, environment, web port and data directory."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    data_dir: Path


def child_specs(
    settings: Settings,
    environ: Mapping[str, str],
    ports: Sequence[int],
    command: Sequence[str] = WORKER_COMMAND,
) -> list[ChildSpec]:
    """A spec per port: the supervisor's environment, one process each, own data directory and web port."""
    specs = []
    for i, port in enumerate(ports):
        name = f"p{i}"
        data_dir = Path(settings.data_dir) / name
        env = dict(environ)
        env.update(
            CLEARANCE_PROCESSES="1",
            CLEARANCE_SIBLINGS=str(len(ports)),  # one generation for all at the start (agents/faust_internals.py)
            CLEARANCE_DATA_DIR=str(data_dir),
            CLEARANCE_WEB_PORT=str(port),
            CLEARANCE_WEB_BIND="127.0.0.1",  # only the supervisor answers from outside
        )
        if env.get("CLEARANCE_TRACE_FILE"):
            env["CLEARANCE_TRACE_FILE"] = f"{env['CLEARANCE_TRACE_FILE']}.{name}"
        specs.append(ChildSpec(name, tuple(command), env, port, data_dir))
    return specs


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held together while they are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class StartGate:
    """Where the processes of one start wait for each other and for the supervisor's check.

    A process imports Faust and builds its app (0.5 s here), then arrives: one byte on the
    `arrived` pipe; and waits for one byte on the `go` pipe before it touches the broker
    (agents/worker.py `pass_gate`). Meanwhile the supervisor reaches the broker and makes the
    internal topics (0.1 to 0.15 s here), which it did before it started any process. It opens
    the gate when every process has arrived, or one has exited, or after `wait_s`: the
    processes then join the group within milliseconds of each other, where the second one
    used to follow 12 to 163 ms later (the assignor's hold, agents/faust_internals.py, is
    there for whatever still comes late). `close` without opening, after a failed check:
    each process reads the pipe's end and exits 1 without a word."""

    wait_s = 30.0  # a process this late is not waited for (the assignor's hold still covers a little)

    def __init__(self) -> None:
        self._arrived_r, self._arrived_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        self.arrivals = 0

    @property
    def child_fds(self) -> tuple[int, int]:
        """The pipe ends a process inherits: it writes to the first and reads from the second."""
        return self._arrived_w, self._go_r

    @property
    def argument(self) -> str:
        """The `--start-gate` value a process is given: the two descriptors."""
        return ",".join(str(fd) for fd in self.child_fds)

    def spawned(self) -> None:
        """Every process is started: the supervisor's copies of their ends are closed."""
        for fd in self.child_fds:
            os.close(fd)

    def wait(self, count: int, keep_waiting: Callable[[], bool], poll_s: float = 0.05) -> int:
        """Until `count` processes have arrived, `keep_waiting()` is False or `wait_s` has
        passed: how many arrived."""
        deadline = time.monotonic() + self.wait_s
        while self.arrivals < count and keep_waiting() and time.monotonic() < deadline:
            readable, _, _ = select.select([self._arrived_r], [], [], poll_s)
            if readable:
                got = os.read(self._arrived_r, count)
                if not got:  # every process has exited
                    break
                self.arrivals += len(got)
        return self.arrivals

    def open(self, count: int) -> None:
        """Let `count` processes through, and no more."""
        with contextlib.suppress(BrokenPipeError):  # every process has exited: the supervisor's loop sees it
            os.write(self._go_w, b"." * count)
        self.close()

    def close(self) -> None:
        for fd in (self._go_w, self._arrived_r):
            with contextlib.suppress(OSError):
                os.close(fd)


def exit_status(code: int) -> int:
    """A child's return code as a shell reports it: 128 + N for death by signal N."""
    return 128 - code if code < 0 else code


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that has the kernel send SIGTERM to the child when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


@dataclass(eq=False)
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    code: int | None = None

    @property
    def running(self) -> bool:
        return self.code is None


@dataclass(eq=False)
class Supervisor:
    """Starts the processes, forwards stop signals, and notices any process that exits."""

    specs: Sequence[ChildSpec]
    poll_seconds: float = 0.2
    children: list[Child] = field(default_factory=list)
    failed: Child | None = None
    abandoned: bool = False  # the start failed before any process reached the broker
    # A second stop signal this soon after the first is the same request delivered twice (`timeout`
    # signals its command and then the command's process group), not an operator asking again.
    repeat_seconds: float = 1.0
    _signalled: list[float] = field(default_factory=list)  # when each stop signal came (monotonic)
    _handled: int = 0

    def start(self, gate: StartGate | None = None) -> None:
        """Start every process, each told of the `gate` if any; before any thread of ours runs
        (the pre-exec hook is not thread-safe)."""
        hook = _die_with_parent()
        for spec in self.specs:
            spec.data_dir.mkdir(parents=True, exist_ok=True)
            command, fds = spec.command, gate.child_fds if gate is not None else ()
            if gate is not None:
                command = (*command, "--start-gate", gate.argument)
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and command
                command, env=dict(spec.env), preexec_fn=hook, process_group=0, pass_fds=fds
            )
            self.children.append(Child(spec, process))
        if gate is not None:
            gate.spawned()

    def announce(self) -> None:
        """Log each process (once the start has gone ahead: a failed check says only why)."""
        for child in self.children:
            spec = child.spec
            log.info(
                "%s: pid %d, web port %d, data directory %s", spec.name, child.process.pid, spec.port, spec.data_dir
            )

    def starting(self) -> bool:
        """Still worth waiting at the start gate: no process has exited and no stop was asked."""
        return not self._signalled and all(c.process.poll() is None for c in self.children)

    def abandon(self) -> None:
        """The start failed before any process reached the broker: they exit at the closed gate,
        and their exits are no failure of theirs (logged at DEBUG only)."""
        self.abandoned = True

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        """The SIGTERM/SIGINT handler: only notes the time; the loop acts (no Popen calls inside a handler)."""
        self._signalled.append(time.monotonic())

    def alive(self, name: str) -> bool:
        return any(c.spec.name == name and c.running for c in self.children)

    @property
    def stopping(self) -> bool:
        return self._handled > 0 or self.failed is not None or self.abandoned

    def run(self) -> int:
        """Until every process has exited; the supervisor's exit code."""
        while True:
            self._take_signals()
            for child in self.children:
                if child.running:
                    code = child.process.poll()
                    if code is not None:
                        self._exited(child, code)
            if not any(c.running for c in self.children):
                return self._exit_code()
            time.sleep(self.poll_seconds)

    def _take_signals(self) -> None:
        while self._handled < len(self._signalled):
            after = self._signalled[self._handled] - self._signalled[0]
            self._handled += 1
            if self._handled == 1:
                log.info("stopping: SIGTERM to %d processes", sum(c.running for c in self.children))
                self._send(signal.SIGTERM)
            elif after < self.repeat_seconds:
                log.info("stop signal again %.2f s after the first: the same request, the clean stop goes on", after)
            else:
                log.warning("second stop signal: killing the processes (SIGKILL)")
                self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        for child in self.children:
            if child.running:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile; the loop reaps it
                    child.process.send_signal(signum)

    def _exited(self, child: Child, code: int) -> None:
        child.code = code
        name, pid = child.spec.name, child.process.pid
        if self.abandoned:
            log.debug("%s (pid %d) left at the closed start gate, exit code %d", name, pid, code)
            return
        if self.stopping:
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "%s (pid %d) stopped, exit code %d", name, pid, code)
            return
        self.failed = child
        log.error(
            "%s (pid %d) EXITED with exit code %d while the supervisor was running: stopping the other "
            "processes; none is restarted, the supervisor exits non-zero",
            name,
            pid,
            code,
        )
        self._send(signal.SIGTERM)

    def _exit_code(self) -> int:
        if self.failed is not None:
            return exit_status(self.failed.code or 0) or 1
        for child in self.children:
            if child.code:
                return exit_status(child.code)
        return 0


def run_processes(
    settings: Settings,
    environ: Mapping[str, str],
    command: Sequence[str] = WORKER_COMMAND,
    prepare: Callable[[], int] | None = None,
) -> int:
    """Serve the rolled-up web port, start `settings.processes` processes of `command`, supervise them.

    With `prepare` (the broker's check, an exit code), the processes are started with a
    `StartGate`, `prepare` runs while they start, and the gate opens once it has passed and
    they are all there; when it fails, its code is the supervisor's."""
    specs = child_specs(settings, environ, free_ports(settings.processes), command)
    rollup = Rollup([(s.name, s.port) for s in specs])
    try:
        server = Server(settings.web_bind, settings.web_port, rollup)  # bound now, answers once started
    except OSError as exc:
        print(f"clearance worker: cannot serve {settings.web_bind}:{settings.web_port}: {exc}", file=sys.stderr)
        return 1
    supervisor = Supervisor(specs)
    rollup.alive = supervisor.alive
    previous = {s: signal.signal(s, supervisor.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    gate = StartGate() if prepare is not None else None
    had_data_dir = Path(settings.data_dir).exists()
    try:
        supervisor.start(gate)
        if gate is not None and prepare is not None and (failed := _through_gate(supervisor, gate, prepare)):
            supervisor.run()  # every process exits at the closed gate
            _remove_empty([s.data_dir for s in specs] + ([] if had_data_dir else [Path(settings.data_dir)]))
            return failed
        server.start()
        supervisor.announce()
        log.info(
            "%d worker processes; /healthz, /readyz and /metrics for all on %s:%d",
            len(specs),
            settings.web_bind,
            settings.web_port,
        )
        code = supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
    log.log(logging.INFO if code == 0 else logging.ERROR, "all %d processes stopped; exit code %d", len(specs), code)
    return code


def supervise(settings: Settings) -> int:
    """`clearance worker` with CLEARANCE_PROCESSES > 1: run the processes, checking the broker once as they start."""
    from agents.topics import prepare_broker  # not agents.worker: that imports Faust

    logging.basicConfig(
        level=settings.log_level, format="[%(asctime)s] [%(process)s] [%(levelname)s] %(name)s: %(message)s"
    )
    try:
        settings.rules()  # the positive list and the regime: a bad one fails here, once
    except (ValueError, OSError) as exc:
        print(f"clearance worker: {exc}", file=sys.stderr)
        return 2
    return run_processes(settings, os.environ, WORKER_COMMAND, prepare=partial(prepare_broker, settings))


def _through_gate(supervisor: Supervisor, gate: StartGate, prepare: Callable[[], int]) -> int:
    """Check the broker while the processes start, then open the gate (0), or close it: the check's code."""
    began = time.monotonic()
    code = prepare()
    if code:
        gate.close()
        supervisor.abandon()
        return code
    count = len(supervisor.children)
    arrived = gate.wait(count, supervisor.starting)
    gate.open(count)
    log.info(
        "start gate opened %.2f s after the start: %d of %d processes there", time.monotonic() - began, arrived, count
    )
    return 0


def _remove_empty(directories: Sequence[Path]) -> None:
    """Remove the empty directories in and under each of `directories` (the processes' own,
    which Faust fills with empty table directories as it builds its app), deepest first: a start
    that failed leaves nothing."""
    for top in directories:
        for path, _, _ in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
            with contextlib.suppress(OSError):  # not empty: kept
                Path(path).rmdir()
