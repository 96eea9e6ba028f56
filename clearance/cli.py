"""The `clearance` command: a thin dispatcher to one entry point per subcommand.

The subcommands are the ``clearance.commands`` entry points (pyproject.toml), each a
``cli(argv: list[str]) -> int``. A command's module is imported only when that command
runs, so `clearance run` never pays for importing Faust, and this module names none of
them: the application package does not reach up into the shells or the benchmarks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

GROUP = "clearance.commands"

# The one-line help of each command, in the order `clearance --help` lists them.
HELP: dict[str, str] = {
    "run": "run the comparison over trace files, no broker",
    "generate": "write a synthetic 11.11 trace with labels",
    "demo": "generate a peak-hour trace, run it, report",
    "broker": "start|stop|status a local Apache Kafka broker",
    "topics": "create the pipeline's topics",
    "worker": "run a Faust worker on Kafka",
    "replay": "produce a trace into the input topics",
    "bench": "run the Kafka benchmark suite",
    "monitor": "the clearance floor's live page (declarations, receipt times, lag)",
}

# Third-party packages that only the `tools` extra installs.
TOOLS_EXTRA = frozenset({"numpy", "matplotlib"})

Command = Callable[[list[str]], int]


def commands() -> dict[str, EntryPoint]:
    """The declared commands, by name (the first declaration wins)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, entry)
    return found


def _usage(names: list[str]) -> str:
    ordered = [name for name in HELP if name in names] + sorted(set(names) - HELP.keys())
    lines = ["usage: clearance COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<9} {HELP.get(name, '')}".rstrip() for name in ordered]
    lines.append("\n`clearance COMMAND --help` describes one command.")
    return "\n".join(lines)


def _load(name: str, entry: EntryPoint) -> Command | str:
    """The command's function, or the one line saying why it cannot run here."""
    try:
        command: Command = entry.load()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing in TOOLS_EXTRA:
            return (
                f"clearance: `{name}` needs {missing}, which is not installed: "
                "install the tools extra (pip install 'clearance[tools]')"
            )
        module = entry.value.partition(":")[0]
        return (
            f"clearance: `{name}` is not available in this installation: "
            f"{module} cannot be imported (no module named {exc.name!r})"
        )
    return command


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    declared = commands()
    if not declared:
        print(f"clearance: no commands are installed (no {GROUP!r} entry points): pip install -e .", file=sys.stderr)
        return 2
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage(list(declared)))
        return 0
    entry = declared.get(args[0])
    if entry is None:
        print(f"clearance: unknown command {args[0]!r}\n\n{_usage(list(declared))}", file=sys.stderr)
        return 2
    loaded = _load(args[0], entry)
    if isinstance(loaded, str):
        print(loaded, file=sys.stderr)
        return 2
    return loaded(args[1:])


if __name__ == "__main__":
    sys.exit(main())
