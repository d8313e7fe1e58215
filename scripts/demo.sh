#!/usr/bin/env bash
# The first command: install into a virtualenv, then run `rotator demo` (a real rotation under load, on this
# machine: embedded PostgreSQL, Secrets Manager on moto, an app of two instances, a load generator).
# Usage: ./scripts/demo.sh [rotator demo options, e.g. --show-rollback, --mysql-dsn mysql://root@127.0.0.1:3306/]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ROTATOR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
echo "== installing rotator with the demo's extras (embedded PostgreSQL, moto) into $VENV"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "$VENV/bin/python" -m pip install --quiet --upgrade pip && "$VENV/bin/python" -m pip install --quiet -e '.[demo]'; } >"$log" 2>&1; then
  cat "$log"
  echo "scripts/demo.sh: the install failed (output above)" >&2
  exit 1
fi
rm -f "$log"
trap - EXIT
echo
if "$VENV/bin/rotator" demo --help >/dev/null 2>&1; then
  exec "$VENV/bin/rotator" demo "$@"
fi
exec "$VENV/bin/python" -m rotator.demo "$@"
