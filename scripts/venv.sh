# Sourced by the scripts (demo.sh, test.sh, lint.sh, `make venv`), from the repository root:
# make .venv and install -e '.[dev]' when missing or when pyproject.toml changed since the
# last install (a stamp file records its hash); then compiles the core's hot modules with
# mypyc when pipeline/ changed since the last build (scripts/build_native.py, ~20 s; without
# a C compiler the core runs as Python: the same results, slower).
venv=.venv
stamp=$venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    echo "$(basename "$0"): installing -e '.[dev]' into $venv (pyproject.toml is new or changed)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$stamp"
fi
"$venv/bin/python" scripts/build_native.py --if-stale
