#!/usr/bin/env bash
# The project's test command (README, CI): `./scripts/test.sh [PYTEST ARGS...]`.
#  1. makes .venv and installs -e '.[dev]' when missing or when pyproject.toml changed,
#     and compiles the core when pipeline/ changed (scripts/venv.sh); installs Java 17,
#     Maven, docker-compose and Chromium (the monitor's browser test) with apt when missing
#     and running as root;
#  2. starts the local Kafka broker (`clearance broker start`) unless KAFKA_BOOTSTRAP is set;
#  3. runs pytest (over tests/ unless told otherwise) with the arguments given; with none,
#     and the core compiled (scripts/build_native.py), the core's unit tests once more from
#     its Python sources (CLEARANCE_NATIVE=0);
#  4. stops the broker if it started it, and exits with pytest's exit code (1 if either failed).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

# The local broker runs on Java and is fetched by Maven, and tests/deploy validates
# docker-compose.yml with Docker Compose: install what is missing where we can (root, apt).
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [[ -z "${KAFKA_BOOTSTRAP:-}" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing Java 17 and Maven for the local Kafka broker" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >&2
    fi
fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        # without recommends: docker-compose recommends the whole docker.io engine
        echo "test.sh: installing docker-compose to validate docker-compose.yml" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >&2; } ||
            echo "test.sh: could not install docker-compose (tests/deploy will say so)" >&2
    fi
fi

# tests/integration/test_monitor.py loads the monitor's page in headless Chromium (it skips,
# saying so, only when no Chromium can be found).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing Chromium for the monitor's browser test" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2; } ||
            echo "test.sh: could not install chromium (the browser test will skip and say so)" >&2
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
if [[ $# == 0 ]]; then
    # The whole suite (what .ci/run calls) names its 15 slowest tests, for the 20-minute budget:
    # on this project's VM it ran 10 min in a quiet hour and 19.5 min in a slow one (4 December).
    "$venv/bin/pytest" --durations=15
else
    "$venv/bin/pytest" "$@"
fi
code=$?
if [[ $# == 0 ]] && "$venv/bin/python" -c 'import sys, pipeline.compiled as c, pipeline.rules as r; sys.exit(not c.is_compiled(r))'; then
    # The tests above ran the compiled core; the core's and the embedded runner's unit tests
    # run again from the Python sources, the fallback where no C compiler is (~30 s).
    echo "test.sh: the core's unit tests again from the sources (CLEARANCE_NATIVE=0)" >&2
    CLEARANCE_NATIVE=0 "$venv/bin/pytest" -q -p no:cacheprovider tests/pipeline tests/embedded || code=1
fi
set -e
exit "$code"
