#!/usr/bin/env bash
# Runs the data migrations of an environment's table (infra/deploy.sh does it after every
# deploy; run this to resume after a failure):
#   ./infra/migrate.sh production
# Needs AWS credentials in the environment, as infra/deploy.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/migrate.sh ENVIRONMENT}
source infra/lib.sh
stack=$(stack_name "$env_name")
ensure_venv "$(pwd)/.tools/ops" infra/requirements-ops.txt
exec "$(pwd)/.tools/ops/bin/python" infra/migrate.py --stack "$stack"
