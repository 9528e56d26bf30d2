#!/usr/bin/env bash
# Checks a deployed environment from outside: its API's deep health (the table, every
# queue, the signing keys) must answer 200. Prints `api_url=<url>` (for CI outputs).
#   ./infra/health.sh staging
# Needs AWS credentials in the environment (to read the stack's ApiUrl output).
set -euo pipefail
cd "$(dirname "$0")/.."
env_name=${1:?usage: infra/health.sh ENVIRONMENT}
source infra/lib.sh
ensure_venv "$(pwd)/.tools/ops" infra/requirements-ops.txt >&2
stack=$(stack_name "$env_name")
api_url=$("$(pwd)/.tools/ops/bin/python" - "$stack" <<'PY'
import sys
import boto3

stack = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0]
params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
print((params.get("ApiUrl") or outputs.get("ApiUrl", "")).rstrip("/"))
PY
)
echo "api_url=$api_url"
# A fresh deploy may take a few seconds to answer: a few tries, then the verdict.
for attempt in 1 2 3 4 5; do
  if curl -fsS --max-time 10 "$api_url/health/deep" >&2; then
    echo >&2
    exit 0
  fi
  echo "deep health not ok yet (try $attempt)" >&2
  sleep 10
done
echo "$api_url/health/deep did not answer 200" >&2
exit 1
