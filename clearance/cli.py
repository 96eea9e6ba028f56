"""The `clearance` command: a thin dispatcher to one module per subcommand.

Each subcommand module exposes ``cli(argv: list[str]) -> int`` and is imported
only when used, so `clearance run` never pays for importing Faust.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("embedded.runner", "run the comparison over trace files, no broker"),
    "generate": ("tracegen.generator", "write a synthetic 11.11 trace with labels"),
    "demo": ("embedded.demo", "generate a peak-hour trace, run it, report"),
    "broker": ("ops.broker", "start|stop|status a local Apache Kafka broker"),
    "topics": ("clearance.topics", "create the pipeline's topics"),
    "worker": ("agents.worker", "run a Faust worker on Kafka"),
    "replay": ("ops.replay", "produce a trace into the input topics"),
    "bench": ("benchmarks.suite", "run the Kafka benchmark suite"),
}


def _usage() -> str:
    lines = ["usage: clearance COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`clearance COMMAND --help` describes one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"clearance: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    code: int = module.cli(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
