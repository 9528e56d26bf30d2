#!/usr/bin/env bash
# Deletes a preview environment's stack and everything it holds (infra/teardown.py):
#   ./infra/teardown.sh pr-42
# Only preview stacks; needs AWS credentials in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/teardown.sh pr-<number>}
source infra/lib.sh
ensure_venv "$(pwd)/.tools/ops" infra/requirements-ops.txt
exec "$(pwd)/.tools/ops/bin/python" infra/teardown.py "$(stack_name "$env_name")"
