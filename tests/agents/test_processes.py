"""The supervisor of `clearance worker --processes N`, over stand-in workers (no broker, no Faust)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.processes import child_specs, exit_status, free_ports
from agents.rollup import merge_metrics, with_label
from clearance.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("standin_worker.py")
DRIVER = (
    "import logging, os, sys\n"
    "from agents.processes import run_processes\n"
    "from clearance.settings import Settings\n"
    "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
    f"sys.exit(run_processes(Settings.from_env(), os.environ, [sys.executable, {str(STANDIN)!r}]))\n"
)


# ---------------------------------------------------------------- pure parts


def test_each_process_gets_its_own_data_dir_and_port_and_runs_alone() -> None:
    settings = Settings.from_env({"CLEARANCE_DATA_DIR": "/var/clearance", "CLEARANCE_PROCESSES": "2"})
    env = {"CLEARANCE_PROCESSES": "2", "CLEARANCE_WEB_PORT": "6066", "CLEARANCE_TRACE_FILE": "/x/t", "X": "y"}
    specs = child_specs(settings, env, [7001, 7002], ["worker"])
    assert [s.name for s in specs] == ["p0", "p1"]
    assert [s.data_dir for s in specs] == [Path("/var/clearance/p0"), Path("/var/clearance/p1")]
    for spec, port in zip(specs, (7001, 7002), strict=True):
        assert spec.env["CLEARANCE_PROCESSES"] == "1" and spec.env["CLEARANCE_WEB_PORT"] == str(port)
        assert spec.env["CLEARANCE_SIBLINGS"] == "2", "each knows how many were started together"
        assert spec.env["CLEARANCE_DATA_DIR"] == str(spec.data_dir) and spec.env["X"] == "y"
        assert spec.env["CLEARANCE_WEB_BIND"] == "127.0.0.1"
        assert spec.env["CLEARANCE_TRACE_FILE"] == f"/x/t.{spec.name}"
    assert env["CLEARANCE_PROCESSES"] == "2", "the supervisor's environment is not changed"


def test_processes_default_to_the_cores_and_one_is_the_minimum() -> None:
    assert Settings.from_env({}).processes == len(os.sched_getaffinity(0))
    assert Settings.from_env({"CLEARANCE_PROCESSES": "1"}).processes == 1
    with pytest.raises(ValueError, match="CLEARANCE_PROCESSES"):
        Settings.from_env({"CLEARANCE_PROCESSES": "0"})
    assert Settings().siblings == 1 and Settings.from_env({"CLEARANCE_SIBLINGS": "3"}).siblings == 3
    with pytest.raises(ValueError, match="CLEARANCE_SIBLINGS"):
        Settings.from_env({"CLEARANCE_SIBLINGS": "0"})


def test_free_ports_are_distinct() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)


@pytest.mark.parametrize(("code", "status"), [(0, 0), (3, 3), (-signal.SIGKILL, 137), (-signal.SIGTERM, 143)])
def test_exit_status_is_the_shells(code: int, status: int) -> None:
    assert exit_status(code) == status


@pytest.mark.parametrize(
    ("line", "labelled"),
    [
        ("m 1", 'm{process="p0"} 1'),
        ('m{a="1"} 2', 'm{process="p0",a="1"} 2'),
        ("m{} 2", 'm{process="p0"} 2'),
        ('m{a="x y"} 2.5', 'm{process="p0",a="x y"} 2.5'),
    ],
)
def test_with_label(line: str, labelled: str) -> None:
    assert with_label(line, "process", "p0") == labelled


def test_metrics_are_grouped_by_family_and_labelled_by_process() -> None:
    text = (
        "# HELP clearance_documents_in documents\n# TYPE clearance_documents_in counter\n"
        'clearance_documents_in{topic="o"} 5\n'
        "# HELP clearance_windows_open open\n# TYPE clearance_windows_open gauge\nclearance_windows_open 3\n"
    )
    merged = merge_metrics({"p0": text, "p1": text.replace(" 5", " 7"), "p2": None}).splitlines()
    assert merged.count("# TYPE clearance_documents_in counter") == 1
    start = merged.index("# TYPE clearance_documents_in counter")
    assert merged[start + 1 : start + 3] == [
        'clearance_documents_in{process="p0",topic="o"} 5',
        'clearance_documents_in{process="p1",topic="o"} 7',
    ]
    assert 'clearance_windows_open{process="p1"} 3' in merged
    up = [line for line in merged if line.startswith("clearance_process_up{")]
    assert up == ['clearance_process_up{process="p0"} 1', 'clearance_process_up{process="p1"} 1'] + [
        'clearance_process_up{process="p2"} 0'
    ]


# ---------------------------------------------------------------- the supervisor, as a process


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Supervised:
    def __init__(self, tmp: Path, processes: int = 2, **extra: str) -> None:
        self.data = tmp / "data"
        self.port = _port()
        self.log = tmp / "supervisor.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
        env |= {
            "CLEARANCE_PROCESSES": str(processes),
            "CLEARANCE_DATA_DIR": str(self.data),
            "CLEARANCE_WEB_PORT": str(self.port),
            **extra,
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:  # noqa: S310
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def wait_for(self, path: str, status: int, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, body = self.get(path)
            if got == status:
                return body
            time.sleep(0.1)
        pytest.fail(f"{path} never answered {status}:\n{self.log.read_text()}")

    def pid(self, name: str) -> int:
        path = self.data / name / "pid"
        deadline = time.monotonic() + 20
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline, f"{name} never started:\n{self.log.read_text()}"
            time.sleep(0.05)
        return int(path.read_text())

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.wait(10)


def test_one_health_and_sigterm_stops_every_process(tmp_path: Path, supervised: list[Supervised]) -> None:
    s = Supervised(tmp_path, STANDIN_READY_AFTER="1.5")
    supervised.append(s)
    pids = [s.pid("p0"), s.pid("p1")]
    assert len(set(pids)) == 2 and s.proc.pid not in pids
    assert (s.data / "p0" / "env").read_text() == "1"
    status, body = s.get("/readyz")
    assert status == 503 and "p0: not ready" in body, body  # not before every process is ready
    assert "p1: ready" in s.wait_for("/readyz", 200)
    assert s.get("/healthz")[0] == 200
    metrics = s.get("/metrics")[1]
    assert 'clearance_documents_in{process="p0",topic="orders"} 1' in metrics
    assert 'clearance_documents_in{process="p1",topic="orders"} 2' in metrics
    assert 'clearance_process_up{process="p1"} 1' in metrics

    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0, s.log.read_text()
    for name in ("p0", "p1"):
        assert (s.data / name / "terminated").read_text() == str(int(signal.SIGTERM))
    assert all(_gone(pid) for pid in pids)


def test_sigint_is_forwarded_as_sigterm(tmp_path: Path, supervised: list[Supervised]) -> None:
    s = Supervised(tmp_path)
    supervised.append(s)
    s.wait_for("/readyz", 200)
    s.proc.send_signal(signal.SIGINT)
    assert s.wait() == 0, s.log.read_text()
    assert (s.data / "p1" / "terminated").read_text() == str(int(signal.SIGTERM))


def test_a_stop_signal_delivered_twice_is_one_request(tmp_path: Path, supervised: list[Supervised]) -> None:
    # `timeout` signals its command, then the command's process group: two SIGTERMs. Before, the
    # second one killed every process (SIGKILL) in the middle of its clean stop. (Sent back to back,
    # Python may run the handler once for both; 0.3 s apart, it runs for each.)
    s = Supervised(tmp_path, STANDIN_STOP_SECONDS="1.5")
    supervised.append(s)
    s.wait_for("/readyz", 200)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0, s.log.read_text()
    assert "the same request" in s.log.read_text()
    assert all((s.data / name / "terminated").read_text() == str(int(signal.SIGTERM)) for name in ("p0", "p1"))


def test_a_second_stop_signal_later_kills_the_processes(tmp_path: Path, supervised: list[Supervised]) -> None:
    s = Supervised(tmp_path, STANDIN_STOP_SECONDS="30")
    supervised.append(s)
    s.wait_for("/readyz", 200)
    pids = [s.pid("p0"), s.pid("p1")]
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # the clean stops take 30 s; an operator asks again
    s.proc.send_signal(signal.SIGINT)
    assert s.wait() == 128 + signal.SIGKILL, s.log.read_text()
    assert "killing the processes (SIGKILL)" in s.log.read_text()
    assert all(_gone(pid) for pid in pids)


def test_a_process_that_exits_stops_the_others_loudly_and_is_not_restarted(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    s = Supervised(tmp_path, processes=3, STANDIN_FAIL="p1", STANDIN_EXIT_AFTER="1.5", STANDIN_EXIT_CODE="3")
    supervised.append(s)
    pids = {name: s.pid(name) for name in ("p0", "p1", "p2")}
    assert s.wait() == 3
    log = s.log.read_text()
    assert f"p1 (pid {pids['p1']}) EXITED with exit code 3" in log and "none is restarted" in log, log
    assert log.count("ERROR") >= 1
    for name in ("p0", "p2"):
        assert (s.data / name / "terminated").exists(), f"{name} was not stopped"
    assert all(_gone(pid) for pid in pids.values())
    assert sorted(p.name for p in s.data.iterdir()) == ["p0", "p1", "p2"], "a process was started again"


def test_a_process_exiting_0_on_its_own_is_a_failure_too(tmp_path: Path, supervised: list[Supervised]) -> None:
    s = Supervised(tmp_path, STANDIN_FAIL="p0", STANDIN_EXIT_AFTER="0.5", STANDIN_EXIT_CODE="0")
    supervised.append(s)
    assert s.wait() == 1
    assert "EXITED with exit code 0" in s.log.read_text()


def test_a_process_killed_by_a_signal_exits_the_supervisor_128_plus_n(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    s = Supervised(tmp_path)
    supervised.append(s)
    s.wait_for("/healthz", 200)
    os.kill(s.pid("p1"), signal.SIGKILL)  # the supervisor then stops p0 and exits 137
    assert s.wait() == 137, s.log.read_text()


def test_processes_do_not_outlive_a_killed_supervisor(tmp_path: Path, supervised: list[Supervised]) -> None:
    s = Supervised(tmp_path)
    supervised.append(s)
    pids = [s.pid("p0"), s.pid("p1")]
    s.wait_for("/readyz", 200)
    s.proc.kill()
    s.wait()
    assert all(_gone(pid) for pid in pids), "a worker process outlived its supervisor"
    assert (s.data / "p0" / "terminated").exists()


def test_a_taken_web_port_fails_before_any_process_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
        env |= {"CLEARANCE_PROCESSES": "2", "CLEARANCE_DATA_DIR": str(tmp_path), "CLEARANCE_WEB_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-c", DRIVER], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1 and f"cannot serve 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "p0").exists()


def test_the_worker_command_refuses_zero_processes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    result = subprocess.run(
        [sys.executable, "-m", "clearance.cli", "worker", "--processes", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "CLEARANCE_PROCESSES must be at least 1" in result.stderr


def _no_broker_env(tmp_path: Path) -> dict[str, str]:
    """This environment without our settings, a broker address nothing listens on, a data dir in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARANCE_", "KAFKA_"))}
    return env | {"KAFKA_BOOTSTRAP": f"127.0.0.1:{_port()}", "CLEARANCE_DATA_DIR": str(tmp_path / "data")}


def _python(code: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -c code` from the repository's root, with `_no_broker_env`."""
    env = _no_broker_env(tmp_path)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_without_a_broker_the_supervisor_says_so_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clearance.cli", "worker", "--processes", "2"],
        env=_no_broker_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 1 and len(out.splitlines()) == 1 and "no Kafka broker reachable" in out, out
    assert not (tmp_path / "data").exists()


def test_the_supervisor_runs_without_importing_faust(tmp_path: Path) -> None:
    # Importing Faust cost the supervisor 0.6 CPU-s before it started the first process.
    driver = (
        "import sys\n"
        "from agents.worker import cli\n"
        "code = cli(['--processes', '2'])\n"  # no broker: the supervisor's check fails, exit 1
        "print('code', code, 'faust imported', 'faust' in sys.modules)\n"
    )
    result = _python(driver, tmp_path)
    assert "code 1 faust imported False" in result.stdout, result.stdout + result.stderr


def test_the_broker_is_checked_once_while_the_processes_start_and_they_skip_the_check(tmp_path: Path) -> None:
    # The supervisor reaches the broker and makes the internal topics (prepare_broker) while its
    # processes import Faust; they wait at its start gate, and do neither again (0.1 to 0.15 s each).
    supervisor = (
        "import agents.processes as p, agents.topics as t\n"
        "from agents.worker import cli\n"
        "checks, started = [], []\n"
        "t.prepare_broker = lambda s: checks.append(s.app_id) or 0\n"
        "def run(settings, environ, command, prepare=None):\n"
        "    started.append(list(command))\n"
        "    return prepare()\n"
        "p.run_processes = run\n"
        "print('code', cli(['--processes', '2']), 'checks', len(checks), 'command', started)\n"
    )
    result = _python(supervisor, tmp_path)
    assert "code 0 checks 1 command [[" in result.stdout, result.stdout + result.stderr
    assert "'clearance.cli', 'worker']]" in result.stdout, result.stdout
    process = (  # one process: the changelogs' lookup after the gate (or the check) stops it here
        "import os, agents.worker as w\n"
        "from clearance.topics import TopicsError\n"
        "checks = []\n"
        "w.prepare_broker = lambda s: checks.append(s.app_id) or 0\n"
        "def stop(s): raise TopicsError('stopped after the check')\n"
        "w.changelog_ids = stop\n"
        "def gate(answer):\n"
        "    arrived_r, arrived_w = os.pipe()\n"
        "    go_r, go_w = os.pipe()\n"
        "    os.write(go_w, answer)\n"
        "    os.close(go_w)\n"
        "    return f'{arrived_w},{go_r}', arrived_r\n"
        "opened, arrived = gate(b'.')\n"
        "through = w.cli(['--processes', '1', '--start-gate', opened]), len(checks), os.read(arrived, 8)\n"
        "closed, _ = gate(b'')\n"
        "refused = w.cli(['--processes', '1', '--start-gate', closed]), len(checks)\n"
        "alone = w.cli(['--processes', '1']), len(checks)\n"
        "print('through', through, 'refused', refused, 'alone', alone)\n"
    )
    result = _python(process, tmp_path, timeout=90)
    assert "through (1, 0, b'.') refused (1, 0) alone (1, 1)" in result.stdout, result.stdout + result.stderr


def test_the_start_gate_holds_every_process_until_all_are_there_and_it_opens(tmp_path: Path) -> None:
    """Each process arrives and waits; the supervisor sees them all arrive, and they go on only
    once it opens the gate. A closed gate sends them away, and a process that exits ends the wait."""
    from agents.processes import StartGate

    child = (
        "import sys, time\n"
        "from agents.worker import pass_gate\n"
        "went = pass_gate(sys.argv[1])\n"
        "print(went, time.monotonic())\n"
    )

    def spawn(gate: StartGate, count: int) -> list[subprocess.Popen[str]]:
        procs = [
            subprocess.Popen(  # noqa: S603 - our interpreter
                [sys.executable, "-c", child, gate.argument],
                cwd=ROOT,
                pass_fds=gate.child_fds,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        gate.spawned()
        return procs

    gate = StartGate()
    procs = spawn(gate, 2)
    assert gate.wait(2, lambda: True) == 2
    time.sleep(0.3)
    assert all(p.poll() is None for p in procs), "nobody goes on before the gate opens"
    opened = time.monotonic()
    gate.open(2)
    answers = [p.communicate(timeout=30)[0].split() for p in procs]
    assert [a[0] for a in answers] == ["True", "True"] and all(float(a[1]) >= opened for a in answers)

    gate = StartGate()
    procs = spawn(gate, 2)
    assert gate.wait(2, lambda: True) == 2
    gate.close()
    assert [p.communicate(timeout=30)[0].split()[0] for p in procs] == ["False", "False"]

    gate = StartGate()
    gate.wait_s = 30
    fds = gate.child_fds  # both hold the pipe's ends, and neither arrives
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=fds)  # noqa: S603
    exited = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"], pass_fds=fds)  # noqa: S603
    gate.spawned()
    began = time.monotonic()
    assert gate.wait(2, lambda: exited.poll() is None) == 0
    assert 0.4 < time.monotonic() - began < 20, "a process that exits ends the wait, and only that"
    late.kill()
    assert late.wait() and exited.wait() == 0
    gate.open(2)  # nobody left to read it: no error, the supervisor's loop sees the exits
