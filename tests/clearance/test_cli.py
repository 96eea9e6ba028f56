"""The `clearance` dispatcher: entry points, help, unknown and unavailable commands."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from clearance import cli

EXPECTED = ["run", "generate", "demo", "broker", "topics", "worker", "replay", "bench", "monitor"]
SHELLS = ("agents", "embedded", "tracegen", "ops", "monitor", "benchmarks", "faust", "numpy")

calls: list[list[str]] = []


def _recording_command(argv: list[str]) -> int:
    calls.append(argv)
    return 7


def _fake(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    entry = EntryPoint(name=name, value=value, group=cli.GROUP)
    monkeypatch.setattr(cli, "commands", lambda: {name: entry})


def test_the_commands_are_declared_entry_points() -> None:
    assert sorted(cli.commands()) == sorted(EXPECTED)
    assert list(cli.HELP) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_every_entry_point_resolves_to_a_callable(name: str) -> None:
    command = cli.commands()[name].load()
    assert callable(command)
    assert command.__name__ == "cli"


@pytest.mark.parametrize("flag", [[], ["--help"], ["-h"], ["help"]])
def test_help_lists_every_command_with_its_line(flag: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(flag) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == EXPECTED
    for name, help_ in cli.HELP.items():
        assert f"  {name:<9} {help_}\n" in out


def test_an_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    captured = capsys.readouterr()
    assert "unknown command 'frobnicate'" in captured.err
    assert "usage: clearance COMMAND" in captured.err
    assert captured.out == ""


def test_a_command_gets_its_arguments_and_returns_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, "echo", f"{__name__}:_recording_command")
    calls.clear()
    assert cli.main(["echo", "a", "--b"]) == 7
    assert calls == [["a", "--b"]]


def test_a_command_whose_package_is_missing_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake(monkeypatch, "bench", "no_such_package_here.suite:cli")
    assert cli.main(["bench"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "`bench` is not available in this installation" in captured.err
    assert "no_such_package_here" in captured.err
    assert "Traceback" not in captured.err


def test_a_command_that_needs_the_tools_extra_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails as if absent
    _fake(monkeypatch, "generate", "numpy:cli")
    assert cli.main(["generate", "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "`generate` needs numpy" in err
    assert "clearance[tools]" in err


def test_no_declared_commands_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "commands", dict)
    assert cli.main(["run"]) == 2
    assert "no commands are installed" in capsys.readouterr().err


def test_python_m_help_imports_no_command_module() -> None:
    """`python -m clearance.cli` works, and listing the commands loads none of them."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['clearance', '--help']\n"
        "try:\n"
        "    runpy.run_module('clearance.cli', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & set({SHELLS!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)  # noqa: S603
    assert "usage: clearance COMMAND" in result.stdout
    assert result.stdout.rstrip().endswith("[]"), result.stdout
