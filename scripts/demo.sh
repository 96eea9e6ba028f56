#!/usr/bin/env bash
# The project's main command (README): set up .venv on first use, then run the demo:
# a generated 11.11 peak-hour trace through the embedded pipeline, with a report.
# Falls back to the small sample trace when the generator is not available.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if .venv/bin/python -c "import embedded.demo" 2>/dev/null; then
    exec .venv/bin/clearance demo "$@"
fi
exec .venv/bin/clearance run --input samples/small --output out/sample "$@"
