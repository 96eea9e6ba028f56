#!/usr/bin/env bash
# The project's test command (README, CI): `./scripts/test.sh [PYTEST ARGS...]`.
#  1. makes .venv and installs -e '.[dev]' when missing or when pyproject.toml changed;
#  2. starts the local Kafka broker (`clearance broker start`) unless KAFKA_BOOTSTRAP is set;
#  3. runs pytest (over tests/ unless told otherwise) with the arguments given;
#  4. stops the broker if it started it, and exits with pytest's exit code.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp=$venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    echo "test.sh: installing -e '.[dev]' into $venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$stamp"
fi

# The local broker runs on Java and is fetched by Maven; install both where we can.
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [[ -z "${KAFKA_BOOTSTRAP:-}" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing Java 17 and Maven for the local Kafka broker" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >&2
    fi
fi

clearance=$venv/bin/clearance
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    if "$clearance" broker status >/dev/null; then
        echo "test.sh: using the local broker that is already running (left running)" >&2
        KAFKA_BOOTSTRAP=$("$clearance" broker start)
    else
        # --fresh: a broker started for tests begins empty (old test topics slow its start)
        KAFKA_BOOTSTRAP=$("$clearance" broker start --fresh)
        trap '"$clearance" broker stop || true' EXIT
    fi
    export KAFKA_BOOTSTRAP
fi
echo "test.sh: Kafka at $KAFKA_BOOTSTRAP" >&2

set +e
"$venv/bin/pytest" "$@"
code=$?
set -e
exit "$code"
