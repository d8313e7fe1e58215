#!/usr/bin/env bash
# Rotate the database credentials as a one-off ECS task: start it, wait until it stops, print its log, and
# exit with its exit code (0 ok, 1 failed, 2 bad input, 3 locked, 4 rolled back, 5 needs a human).
#
# Usage: scripts/run-credential-rotation.sh [rotator launch flags] [rotate flags such as --dry-run]
#   STACK_NAME  -> --stack-name (the stack made from deploy/cloudformation/rotation.yaml; its outputs fill in
#                  the cluster, task definition, subnets, security groups and log group)
#   AWS_REGION  -> --region
# Flags given on the command line win over these. ROTATOR_BIN names the rotator executable to use.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${ROTATOR_BIN:-}" ]; then
  rotator="$ROTATOR_BIN"
elif command -v rotator >/dev/null 2>&1; then
  rotator="$(command -v rotator)"
elif [ -x "$here/../.venv/bin/rotator" ]; then
  rotator="$here/../.venv/bin/rotator"
else
  echo "$(basename "$0"): no 'rotator' on PATH nor in .venv: pip install . (or activate its venv, or set ROTATOR_BIN)" >&2
  exit 2
fi

args=()
if [ -n "${STACK_NAME:-}" ]; then args+=(--stack-name "$STACK_NAME"); fi
if [ -n "${AWS_REGION:-}" ]; then args+=(--region "$AWS_REGION"); fi

exec "$rotator" launch ${args[@]+"${args[@]}"} "$@"
