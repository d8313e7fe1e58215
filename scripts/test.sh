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
echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"
