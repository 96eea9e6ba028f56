"""The compiled core (scripts/build_native.py, pipeline/compiled.py): loaded only when built from
exactly the sources on disk, and the same results as the sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pipeline
from pipeline import compiled, engine, rules

ROOT = Path(__file__).resolve().parents[2]


def _manifest(native: Path, package: Path, **over: object) -> None:
    native.mkdir(parents=True, exist_ok=True)
    body = {"abi": compiled.abi(), "modules": ["rules"], "sources": compiled.source_hashes(package), **over}
    (native / compiled.MANIFEST).write_text(json.dumps(body), encoding="utf-8")


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the package's sources, to edit."""
    copy = tmp_path / "pipeline"
    shutil.copytree(ROOT / "pipeline", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    return copy


def test_a_build_of_these_sources_comes_first(package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compiled.ENV, raising=False)
    _manifest(tmp_path / "native", package)
    assert compiled.search_path([str(package)], tmp_path / "native") == [
        str(tmp_path / "native" / "pipeline"),
        str(package),
    ]


def _edit_a_source(package: Path) -> dict[str, object]:
    (package / "records.py").write_text((package / "records.py").read_text() + "\n# edited\n")
    return {}


def _add_a_module(package: Path) -> dict[str, object]:
    (package / "extra.py").write_text("X = 1\n")
    return {}


def _another_python(package: Path) -> dict[str, object]:
    return {"abi": "cpython-39-x86_64-linux-gnu"}


@pytest.mark.parametrize("change", [_edit_a_source, _add_a_module, _another_python])
def test_a_stale_build_is_never_loaded(
    change: Callable[[Path], dict[str, object]], package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edited source, a new module or another Python: the sources run, with a warning."""
    monkeypatch.delenv(compiled.ENV, raising=False)
    _manifest(tmp_path / "native", package)
    over = change(package)
    if over:
        _manifest(tmp_path / "native", package, **over)
    with pytest.warns(RuntimeWarning, match="built from other sources"):
        assert compiled.search_path([str(package)], tmp_path / "native") == [str(package)]


def test_no_build_or_native_off_means_the_sources(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(compiled.ENV, raising=False)
    assert compiled.search_path([str(package)], tmp_path / "absent") == [str(package)]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / compiled.MANIFEST).write_text("{not json")
    assert compiled.search_path([str(package)], tmp_path / "broken") == [str(package)]
    _manifest(tmp_path / "native", package)
    monkeypatch.setenv(compiled.ENV, "0")
    assert compiled.search_path([str(package)], tmp_path / "native") == [str(package)]


def _built() -> bool:
    built = compiled.read_manifest(compiled.build_dir())
    return built is not None and compiled.matches(built, ROOT / "pipeline")


needs_build = pytest.mark.skipif(
    not _built(), reason="no compiled core for these sources (scripts/build_native.py; needs a C compiler)"
)


@needs_build
def test_this_process_runs_the_compiled_core_unless_told_not_to() -> None:
    if os.environ.get(compiled.ENV) == "0":
        assert not compiled.is_compiled(rules)
    else:
        assert compiled.is_compiled(rules) and compiled.is_compiled(engine)
        assert pipeline.__path__[0] == str(compiled.build_dir() / "pipeline")
    assert not compiled.is_compiled(pipeline.records)  # the record types stay Python


def _run(trace: Path, out: Path, native: str) -> dict[str, list[dict[str, object]]]:
    env = {**os.environ, compiled.ENV: native}
    cmd = [sys.executable, "-m", "clearance.cli", "run", "--input", str(trace), "--output", str(out)]
    subprocess.run([*cmd, "--progress", "never", "--quiet"], check=True, env=env, cwd=ROOT)
    files = {}
    for name in ("matched.jsonl", "flagged.jsonl", "deadletter.jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]
        for row in rows:
            row.pop("decidedAt", None)
            row.pop("deadLetteredAt", None)
        files[name] = rows
    return files


@needs_build
def test_the_compiled_core_and_the_sources_give_the_same_output(tmp_path: Path) -> None:
    """Every record but its wall-clock time, on a trace with every kind of fault and bad input."""
    trace = tmp_path / "trace"
    generate = [sys.executable, "-m", "clearance.cli", "generate", str(trace), "--orders", "3000", "--seed", "5"]
    subprocess.run(
        [*generate, "--fault-rate", "0.4", "--invalid-rate", "0.05"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    compiled_out, source_out = _run(trace, tmp_path / "c", "1"), _run(trace, tmp_path / "s", "0")
    assert len(compiled_out["flagged.jsonl"]) > 500 and len(compiled_out["deadletter.jsonl"]) > 100
    assert len(compiled_out["matched.jsonl"]) > 1000
    assert compiled_out == source_out
