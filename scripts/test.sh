#!/usr/bin/env bash
# The one test command: fresh virtualenv, install, lint, type-check, whole suite.
# Usage: ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ROTATOR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
echo "== ruff"
"$VENV/bin/ruff" check rotator tests bench
echo "== mypy"
"$VENV/bin/mypy"
# System tools: PHP with mysqli (the consumer matrix, tests/integration/test_consumers.py, reads sqlconf.php with
# them), shellcheck (infrastructure lint) and PgBouncer (tests/integration/test_pgbouncer.py starts its own, on a
# free port; the package's service is not used), from Debian's packages when missing and we may install them.
missing=()
command -v php >/dev/null 2>&1 || missing+=(php-cli php-mysql)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "== infrastructure lint (cfn-lint, hadolint, actionlint, shellcheck)"
PATH="$PWD/$VENV/bin:$PATH" ./scripts/lint-infra.sh
echo "== pytest"
# Four workers on two cores: the suite mostly waits (on servers, subprocesses, health intervals), so four runs
# in parallel finish in well under half the serial time. ROTATOR_TEST_WORKERS=0 runs it serially.
exec "$VENV/bin/python" -m pytest -n "${ROTATOR_TEST_WORKERS:-4}" "$@"
