#!/usr/bin/env bash
# Undoes an environment's last deploy: every function serving its release goes back to the
# version of the release before, at once (infra/rollback.py says how it decides).
#   ./infra/rollback.sh production
#   ./infra/rollback.sh pr-42 --dry-run
# Needs AWS credentials in the environment, as infra/deploy.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/rollback.sh ENVIRONMENT [--dry-run]}
shift
source infra/lib.sh
stack=$(stack_name "$env_name")
ensure_venv "$(pwd)/.tools/ops" infra/requirements-ops.txt
exec "$(pwd)/.tools/ops/bin/python" infra/rollback.py "$stack" "$@"
