"""Where the core's modules load from: a compiled build of exactly these sources, else the sources.

`scripts/build_native.py` compiles the hot modules of this package with mypyc into
`<sys.prefix>/clearance-native/pipeline/` (so a virtual environment or an image holds its
own build) and writes there a manifest: the sha256 of every `pipeline/*.py` it compiled
against, and the ABI it was built for. `pipeline/__init__.py` puts that directory first on
the package's search path only when the manifest matches the sources on disk, so an
edited source is never shadowed by an older build: until the build is remade it runs as
Python (the same results; the core's own work takes ~1.6x the instructions), with one
warning. `CLEARANCE_NATIVE=0` always runs the sources.

It reads a few files when the package is first imported: import machinery, not the
core's work, which stays free of I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Any

BUILD_DIR_NAME = "clearance-native"
MANIFEST = "manifest.json"
ENV = "CLEARANCE_NATIVE"


def build_dir() -> Path:
    """Where `scripts/build_native.py` puts the build for this interpreter."""
    return Path(sys.prefix) / BUILD_DIR_NAME


def abi() -> str:
    """The interpreter's extension ABI tag (a build for another Python is not loaded)."""
    return str(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)


def source_hashes(package_dir: Path) -> dict[str, str]:
    """sha256 of every module of the package, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(package_dir.glob("*.py"))}


def read_manifest(native: Path) -> dict[str, Any] | None:
    """The manifest of the build in `native`, None where there is none (or it is unreadable)."""
    try:
        built = json.loads((native / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return built if isinstance(built, dict) else None


def matches(built: dict[str, Any], package_dir: Path) -> bool:
    """True when a manifest was built for this Python from the modules in `package_dir` as they are."""
    return bool(built.get("abi") == abi() and built.get("sources") == source_hashes(package_dir))


def search_path(path: list[str], native: Path | None = None) -> list[str]:
    """The package's `__path__`: the build's directory first when it matches the sources."""
    if os.environ.get(ENV, "1") == "0" or not path:
        return path
    native = build_dir() if native is None else native
    built = read_manifest(native)
    if built is None:
        return path  # no build here: the sources
    if matches(built, Path(path[0])):
        return [str(native / "pipeline"), *path]
    warnings.warn(
        f"the compiled core in {native} was built from other sources than {path[0]} (or for another "
        "Python): running the sources, slower; rebuild with `python scripts/build_native.py`",
        RuntimeWarning,
        stacklevel=2,
    )
    return path


def is_compiled(module: object) -> bool:
    """True when `module` was loaded from a compiled build."""
    return not str(getattr(module, "__file__", "")).endswith(".py")
