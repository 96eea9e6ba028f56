# Sourced by the scripts (demo.sh, test.sh, lint.sh, `make venv`), from the repository root:
# make .venv and install -e '.[dev]' (every version from constraints.txt) when missing or when
# pyproject.toml or constraints.txt changed since the last install (a stamp file records their
# hash); then compiles the core's hot modules with
# mypyc when pipeline/ changed since the last build (scripts/build_native.py, ~20 s; without
# a C compiler the core runs as Python: the same results, slower).
venv=.venv
stamp=$venv/.pyproject.sha256
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    echo "$(basename "$0"): installing -e '.[dev]' into $venv (pyproject.toml or constraints.txt is new or changed)" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
    echo "$want" >"$stamp"
fi
"$venv/bin/python" scripts/build_native.py --if-stale
