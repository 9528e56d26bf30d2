#!/usr/bin/env bash
# Builds and deploys one environment's stack with AWS SAM:
#   ./infra/deploy.sh staging        (infra/environments/staging.toml)
#   ./infra/deploy.sh production     (asks to confirm the change set)
#   ./infra/deploy.sh pr-42          (a preview stack, from the staging settings)
#   ./infra/deploy.sh production --no-confirm   (no question: the pipeline)
# Extra stack parameters go in GROUNDWORK_PARAMETERS, e.g.
#   GROUNDWORK_PARAMETERS="MailDomain=acme.com MailFrom='Acme <no-reply@acme.com>' ApiUrl=https://api.acme.com"
# Needs AWS credentials in the environment (a profile, SSO, or CI's role).
# Ends with the data migrations (infra/migrate.py), once the new release serves all traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/deploy.sh ENVIRONMENT [--no-confirm]}
# --no-confirm: deploy production's change set without asking (the pipeline, whose
# production environment has required reviewers instead).
confirm=()
if [[ "${2:-}" == "--no-confirm" ]]; then
  confirm=(--no-confirm-changeset)
fi
config="infra/environments/$env_name.toml"
stack=()
if [[ ! -f "$config" ]]; then
  # Preview stacks (pr-N) reuse the staging settings under their own name.
  config=infra/environments/staging.toml
  stack=(--stack-name "groundwork-$env_name")
fi
source infra/lib.sh
ensure_venv "$(pwd)/.tools/build" infra/requirements-build.txt
rustup target add aarch64-unknown-linux-gnu >/dev/null
export PATH="$(pwd)/.tools/build/bin:$PATH" SAM_CLI_TELEMETRY=0
# Baked into every binary (`shared::RELEASE`) and written as each function's version
# description, so logs, metrics, /health and the Lambda console name the same release.
GROUNDWORK_RELEASE=$(release_id)
export GROUNDWORK_RELEASE
echo "==> deploying release $GROUNDWORK_RELEASE to $env_name"
# The alarms link their runbooks: on GitHub, the pages of this very commit.
runbooks=""
origin=$(git remote get-url origin 2>/dev/null || true)
if [[ "$origin" =~ github\.com[:/]([^/]+/[^/.]+)(\.git)?$ ]]; then
  runbooks="RunbookBaseUrl=https://github.com/${BASH_REMATCH[1]}/blob/$(git rev-parse HEAD)/docs/runbooks"
fi

# The access-token signing keys live in Secrets Manager; create them on first deploy.
secret="groundwork/$env_name/jwt-keys"
python - "$secret" <<'PY'
import subprocess, sys
import boto3

name = sys.argv[1]
sm = boto3.client("secretsmanager")
try:
    sm.describe_secret(SecretId=name)
    print(f"signing keys: {name} exists")
except sm.exceptions.ResourceNotFoundException:
    key = subprocess.check_output(["cargo", "run", "--quiet", "--package", "local", "--", "jwt-key"]).decode().strip()
    sm.create_secret(Name=name, SecretString=key, Description="Groundwork access-token signing keys, newest first")
    print(f"signing keys: created {name}")
PY

sam build --beta-features --config-file "$config"
# A command-line override replaces the file's list, so Environment is repeated here.
# No changes is no failure: a rerun still reaches the migrations below.
sam deploy --config-file "$config" "${stack[@]}" "${confirm[@]}" --no-fail-on-empty-changeset \
  --parameter-overrides "Environment=$env_name JwtKeysSecretName=$secret Release=$GROUNDWORK_RELEASE $runbooks ${GROUNDWORK_PARAMETERS:-}"

# The token issuer is the API's URL, known only once the stack exists: on a first deploy
# without ApiUrl, deploy again with the URL the stack reports.
stack_name=$(stack_name "$env_name")
api_url=$(python - "$stack_name" <<'PY'
import sys
import boto3

stack = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0]
params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
print("" if params.get("ApiUrl") else outputs.get("ApiUrl", "").rstrip("/"))
PY
)
if [[ -n "$api_url" ]]; then
  echo "==> setting ApiUrl=$api_url (the token issuer) and deploying again"
  sam deploy --config-file "$config" "${stack[@]}" --no-confirm-changeset --no-fail-on-empty-changeset \
    --parameter-overrides "Environment=$env_name JwtKeysSecretName=$secret ApiUrl=$api_url Release=$GROUNDWORK_RELEASE $runbooks ${GROUNDWORK_PARAMETERS:-}"
fi

# Data migrations last: by now every function serves the new release (the traffic shift is
# part of the deploy), so nothing writes the old shapes while they run.
echo "==> running the data migrations"
python infra/migrate.py --stack "$stack_name"
