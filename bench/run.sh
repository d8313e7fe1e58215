#!/usr/bin/env bash
# All benchmarks in one command, from the repository root:
#   ./bench/run.sh                      # rotation figures (PostgreSQL and MariaDB), Vault side-by-side, the loader's
#   ROTATION_ARGS="--runs 25" ./bench/run.sh
# Databases: ROTATOR_TEST_POSTGRES_DSN and ROTATOR_TEST_MYSQL_DSN (default: the local servers, as in .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${ROTATOR_VENV:-.venv}/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv "${ROTATOR_VENV:-.venv}"
  "$PY" -m pip install --quiet -e '.[dev]'
fi
export ROTATOR_TEST_POSTGRES_DSN="${ROTATOR_TEST_POSTGRES_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
export ROTATOR_TEST_MYSQL_DSN="${ROTATOR_TEST_MYSQL_DSN:-mysql://root@127.0.0.1:3306/}"

echo "== rotation: wall time per step, Secrets Manager calls, peak RSS (bench/rotation_bench.py)"
# shellcheck disable=SC2086 # ROTATION_ARGS is a list of words
"$PY" bench/rotation_bench.py ${ROTATION_ARGS:-}
echo
echo "== Vault: OpenBao static role vs the rotator's dual-slot rotation, same app under load (bench/vault_side_by_side.py)"
# shellcheck disable=SC2086
"$PY" bench/vault_side_by_side.py ${VAULT_ARGS:-}
if [ -f bench/client_bench.py ]; then
  echo
  echo "== loader: cached credential reads (bench/client_bench.py)"
  # shellcheck disable=SC2086
  "$PY" bench/client_bench.py ${CLIENT_ARGS:-}
fi
