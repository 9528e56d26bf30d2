#!/usr/bin/env bash
# Builds and deploys one environment's stack with AWS SAM:
#   ./infra/deploy.sh staging        (infra/environments/staging.toml)
#   ./infra/deploy.sh production     (asks to confirm the change set)
#   ./infra/deploy.sh pr-42          (a preview stack, from the staging settings)
# Needs AWS credentials in the environment (a profile, SSO, or CI's role).
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/deploy.sh ENVIRONMENT}
config="infra/environments/$env_name.toml"
overrides=()
if [[ ! -f "$config" ]]; then
  # Preview stacks (pr-N) reuse the staging settings under their own name.
  config=infra/environments/staging.toml
  overrides=(--stack-name "groundwork-$env_name" --parameter-overrides "Environment=$env_name")
fi
source infra/lib.sh
ensure_venv "$(pwd)/.tools/build" infra/requirements-build.txt
rustup target add aarch64-unknown-linux-gnu >/dev/null
export PATH="$(pwd)/.tools/build/bin:$PATH" SAM_CLI_TELEMETRY=0
sam build --beta-features --config-file "$config"
sam deploy --config-file "$config" "${overrides[@]}"
