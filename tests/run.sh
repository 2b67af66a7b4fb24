#!/usr/bin/env bash
# The README's test command: install what the tests need, lint, then run the whole suite.
# Mosquitto and PostgreSQL come from Debian's packages when they are missing; the
# Python packages (with ruff and mypy, the `test` extra) go into .venv. ruff and mypy
# run first and stop the run when they find anything: a minute of linting before
# the tests. Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
  || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

lint() {
  echo "== $*"
  "$@" || { echo "FAILED: $1 found problems (above); the tests did not run" >&2; exit 1; }
}
lint .venv/bin/ruff check hub devices simulators tests
PYTHONPATH="$PWD" lint .venv/bin/mypy hub devices simulators tests
echo "== pytest"

# A real broker and database are part of the suite: fail, never skip, when one is missing.
export HUB_TEST_REQUIRE_REAL=1
# Three pytest-xdist workers (HUB_TEST_WORKERS), a test file each at a time: most tests
# wait on a broker, a database or a subprocess, so even two cores keep three busy (on 2
# cores: 10 min 14 s with three, 12 min 12 s with two). Each worker has its own
# PostgreSQL cluster and Mosquitto; no test may need an idle machine.
exec .venv/bin/python -m pytest -n "${HUB_TEST_WORKERS:-3}" --dist loadfile --durations=15 "$@"
