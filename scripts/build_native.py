"""Compile the core's hot modules with mypyc: `python scripts/build_native.py [--if-stale]`.

Writes `<sys.prefix>/clearance-native/` (pipeline/compiled.py `build_dir`): a `pipeline/`
directory with one extension module per module in MODULES and the group's shared library,
and `manifest.json` with the sha256 of every `pipeline/*.py` the build compiled against.
`pipeline/__init__.py` loads the build only while those hashes match the sources.

`--if-stale`: do nothing when the build already matches. Without mypyc or a C compiler it
says so and exits 0 (1 with `--strict`): the core then runs as Python, the same results, slower.
scripts/venv.sh runs it after every install and whenever pipeline/ changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["CLEARANCE_NATIVE"] = "0"  # this process reads the sources (no warning about a stale build)

from pipeline.compiled import MANIFEST, abi, build_dir, matches, read_manifest, source_hashes  # noqa: E402

# The modules on the per-event path. Left as Python: the msgspec Structs and the record
# types (documents, records), the exception, the settings, the stores (tests pass fakes),
# the pattern texts, the memo helper, the loader itself, and the worker's merge queues
# (mypyc cannot compile its generic slotted dataclass; a few calls per document).
MODULES = (
    "codec",
    "decisions",
    "engine",
    "feed",
    "idcard",
    "join",
    "money",
    "parsing",
    "partitioner",
    "quota",
    "rules",
    "text",
    "timeconv",
    "timeline",
)
GROUP = "pipeline.native"  # its shared library: pipeline/native__mypyc.*.so, beside the modules


def current(target: Path) -> bool:
    """True when the build in `target` was made from the sources on disk, of MODULES, for this Python."""
    built = read_manifest(target)
    return built is not None and built.get("modules") == list(MODULES) and matches(built, ROOT / "pipeline")


def build(target: Path) -> None:
    """Compile MODULES into `target`, replacing what was there; the manifest is written last."""
    from mypyc.build import mypycify  # noqa: PLC0415  # a dev dependency: only when building
    from setuptools import setup  # noqa: PLC0415

    sources = source_hashes(ROOT / "pipeline")
    with tempfile.TemporaryDirectory(prefix="clearance-native-") as scratch:
        work = Path(scratch)
        extensions = mypycify(
            [str(ROOT / "pipeline" / f"{name}.py") for name in MODULES],
            opt_level="3",
            target_dir=str(work / "c"),
            group_name=GROUP,
        )
        staged = work / "lib"
        os.chdir(work)  # setup() reads a pyproject.toml in the working directory: not the project's
        setup(
            name="clearance-native",
            ext_modules=extensions,
            script_args=["--quiet", "build_ext", "--build-lib", str(staged), "--build-temp", str(work / "obj")],
        )
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copytree(staged / "pipeline", target / "pipeline")
    manifest = {"abi": abi(), "modules": list(MODULES), "sources": sources}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--if-stale", action="store_true", help="only when the sources changed since the build")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the build fails (an image's build)")
    args = parser.parse_args(argv)
    target = build_dir()
    if args.if_stale and current(target):
        return 0
    started = time.monotonic()
    try:
        build(target)
    except (ImportError, SystemExit, OSError) as exc:  # no mypyc, no compiler (setup exits), no disk
        print(f"build_native: no compiled core ({exc}); the core runs as Python", file=sys.stderr)
        shutil.rmtree(target, ignore_errors=True)
        return 1 if args.strict else 0
    print(
        f"build_native: compiled {len(MODULES)} modules of pipeline/ into {target} "
        f"in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
