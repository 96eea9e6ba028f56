"""constraints.txt pins every installed package; pyproject.toml and it agree.

pyproject.toml pins the direct dependencies; constraints.txt (what scripts/venv.sh and the
Dockerfile install with) pins the rest, so that a fresh clone builds the environment the
benchmarks measured: on 4 December an unpinned transitive dependency was one suspect for a
threefold change in Faust's speed (benchmarks/RESULTS.md, "The host since 3 December")."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What `python -m venv` brings, and the project itself (installed editable)
NOT_PINNED = {"pip", "setuptools", "wheel", "clearance"}


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned with ==: {line!r}"
        pins[_name(name.split("[", 1)[0])] = version.strip()
    return pins


def _constraints() -> dict[str, str]:
    return _pins((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines())


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += [req for req in extra if not req.startswith("clearance[")]
    return _pins(wanted)


def test_pyproject_and_constraints_pin_the_same_versions() -> None:
    constraints = _constraints()
    differ = {name: (version, constraints.get(name)) for name, version in _pyproject().items()}
    assert {name: pair for name, pair in differ.items() if pair[0] != pair[1]} == {}


def test_every_installed_package_is_pinned_at_its_installed_version() -> None:
    installed = {_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    installed = {name: version for name, version in installed.items() if name not in NOT_PINNED}
    constraints = _constraints()
    assert {n: v for n, v in installed.items() if constraints.get(n) != v} == {}, "installed, not pinned as installed"
    assert sorted(set(constraints) - set(installed)) == [], "pinned, not installed"


def test_a_pin_line_is_read_as_pip_reads_it() -> None:
    assert _pins(["Faust_Streaming[rocksdict]==0.15.3  # the worker", "# a comment", ""]) == {
        "faust-streaming": "0.15.3"
    }
