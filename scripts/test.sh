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
echo "== infrastructure lint (cfn-lint, hadolint, actionlint/shellcheck when installed)"
PATH="$PWD/$VENV/bin:$PATH" ./scripts/lint-infra.sh
# The consumer matrix (tests/integration/test_consumers.py) reads sqlconf.php with the real PHP and mysqli.
if ! command -v php >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "== apt-get install php-cli php-mysql (consumer matrix)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq php-cli php-mysql >/dev/null
fi
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
