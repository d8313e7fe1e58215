#!/usr/bin/env bash
# Heal the app's database users and the config file's owner and mode, without a flip: runs the rotation task
# once as `rotator rotate --sync-db-users --fix-permissions` (the same code path as every rotation) and exits
# with its exit code. Takes the same flags and environment (STACK_NAME, AWS_REGION) as run-credential-rotation.sh,
# e.g. --dry-run to see what it would change.
#
# chown needs the task to run as root or as the file's owner: deploy the stack with ContainerUser=0 (or the
# app's uid) for this, see docs/running.md ("File permissions").
set -euo pipefail

exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run-credential-rotation.sh" "$@" --sync-db-users --fix-permissions
