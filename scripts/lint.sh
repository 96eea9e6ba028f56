#!/usr/bin/env bash
# The project's lint command (CI, `make lint`; .pre-commit-config.yaml runs the same checks):
# `./scripts/lint.sh`. Sets up .venv like scripts/test.sh (scripts/venv.sh), then runs
#  1. ruff check and ruff format --check over the repository;
#  2. mypy on the packages (strict, pyproject.toml's [tool.mypy] files);
#  3. mypy on tests/ and benchmarks/ (strict too, with the per-module relaxations there);
#  4. lint-imports: the layer contracts in pyproject.toml ([tool.importlinter]).
# Every check runs; the exit code is 1 when any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

bin=$venv/bin
failed=()
check() {
    local name=$1
    shift
    echo "lint.sh: $name" >&2
    "$@" || failed+=("$name")
}

check "ruff check" "$bin/ruff" check .
check "ruff format --check" "$bin/ruff" format --check .
check "mypy (packages)" "$bin/mypy"
check "mypy (tests, benchmarks)" "$bin/mypy" tests benchmarks
check "lint-imports" "$bin/lint-imports" --no-cache

if ((${#failed[@]})); then
    printf 'lint.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "lint.sh: all checks passed" >&2
