#!/usr/bin/env bash
# Runs every test of the project, from a fresh machine with only Rust and Python 3:
#   1. installs the pinned test tools (infra/requirements-test.txt) into .tools/venv, once;
#   2. starts the DynamoDB/SQS/SES API server (moto), a capturing SMTP server, a webhook
#      receiver that verifies with the Standard Webhooks reference library, an authoritative
#      DNS server whose TXT records tests write (dnslib), an OpenID Connect provider (npm
#      oidc-provider, installed into infra/oidc/node_modules) and a SAML identity provider
#      (npm samlify, installed into infra/saml/node_modules) on free loopback ports;
#   3. checks formatting and clippy (warnings are errors), over the workspace and over each
#      function alone, with only the features of shared it enables (as it is packaged);
#   4. runs every Rust test in the workspace: unit tests, the storage and queue contract
#      suites on both adapters, Lambda event tests, local-stack integration tests, and the
#      critical journeys on the cloud-in-a-box harness (every function as its Lambda binary,
#      wired as template.yaml wires it; tests/src/cloud);
#   5. runs the API contract check: schemathesis against the local stack's /openapi.json,
#      every check, stateful phase on, fixed seed (infra/contract/);
#   6. beside it, runs the browser test: checks the TypeScript client (clients/typescript) against the
#      OpenAPI document and type-checks it, then drives a page that uses it through a whole
#      cookie session in headless Chromium (Debian's, installed when missing) against the
#      local stack, from an allowed and a refused origin (infra/browser/);
#   7. lints template.yaml with cfn-lint and `sam validate --lint`;
#   8. stops what it started. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"
venv="$tools/venv"
requirements="$root/infra/requirements-test.txt"

# Each step says how far into the run it starts, so a slow step shows in the log.
started=$SECONDS
log() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

# 1. Test tools, reinstalled only when the pinned list changes.
source infra/lib.sh
ensure_venv "$venv" "$requirements"

# 2. The DynamoDB/SQS API server.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until the Python check `code` (given `arg` as sys.argv[1]) succeeds, for up to 20 s;
# a peer that never gets ready fails the run with its log ($tools/<name>.log).
wait_ready() {
  local name=$1 code=$2 arg=$3
  for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "$code" "$arg" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "$name did not start; its log:" >&2
  cat "$tools/$name.log" >&2 || true
  return 1
}
wait_http() { wait_ready "$2" "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1"; }

moto_port=$(free_port)
log "starting the DynamoDB/SQS API server on 127.0.0.1:$moto_port"
"$venv/bin/python" infra/moto_server.py "$moto_port" > "$tools/moto.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$moto_port/moto-api/" moto
export GROUNDWORK_MOTO_URL="http://127.0.0.1:$moto_port"

smtp_port=$(free_port)
smtp_dir="$tools/smtp-capture"
rm -rf "$smtp_dir"
log "starting the capturing SMTP server on 127.0.0.1:$smtp_port"
"$venv/bin/python" infra/smtp_capture.py "$smtp_port" "$smtp_dir" > "$tools/smtp.log" 2>&1 &
pids+=($!)
wait_ready smtp "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$smtp_port"
export GROUNDWORK_SMTP_CAPTURE_PORT="$smtp_port" GROUNDWORK_SMTP_CAPTURE_DIR="$smtp_dir"
webhook_port=$(free_port)
log "starting the webhook receiver (Standard Webhooks reference verifier) on 127.0.0.1:$webhook_port"
"$venv/bin/python" infra/webhook_receiver.py "$webhook_port" > "$tools/webhook-receiver.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$webhook_port/health" webhook-receiver
export GROUNDWORK_WEBHOOK_RECEIVER_URL="http://127.0.0.1:$webhook_port"
dns_port=$(free_port)
dns_dir="$tools/dns-zone"
rm -rf "$dns_dir"
log "starting the DNS server (domain verification records) on 127.0.0.1:$dns_port"
"$venv/bin/python" infra/dns_server.py "$dns_port" "$dns_dir" > "$tools/dns.log" 2>&1 &
pids+=($!)
wait_ready dns "import sys; from dnslib import DNSRecord; DNSRecord.question('ready.test', 'TXT').send('127.0.0.1', int(sys.argv[1]), timeout=1)" "$dns_port"
export GROUNDWORK_DNS_TEST_SERVER="127.0.0.1:$dns_port" GROUNDWORK_DNS_TEST_ZONE_DIR="$dns_dir"
# The OpenID Connect provider (npm oidc-provider, pinned by infra/oidc/package-lock.json).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "Node.js (20 or newer) and npm are needed for the OpenID Connect provider the tests log in through" >&2
  exit 1
fi
# Installs an npm peer's pinned packages into <dir>/node_modules, again only when its lock
# file changed: npm_peer <dir> <its main package> <what it is>.
npm_peer() {
  local dir=$1 package=$2 what=$3
  if [[ ! -d $dir/node_modules/$package ]] || [[ $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    log "installing $what (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_peer infra/oidc oidc-provider "the OpenID Connect provider"
oidc_port=$(free_port)
log "starting the OpenID Connect provider on 127.0.0.1:$oidc_port"
node infra/oidc/provider.mjs "$oidc_port" > "$tools/oidc.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$oidc_port/.well-known/openid-configuration" oidc
export GROUNDWORK_OIDC_PROVIDER_URL="http://127.0.0.1:$oidc_port"
# The SAML identity provider (npm samlify, pinned by infra/saml/package-lock.json).
npm_peer infra/saml samlify "the SAML identity provider"
saml_port=$(free_port)
log "starting the SAML identity provider on 127.0.0.1:$saml_port"
node infra/saml/idp.mjs "$saml_port" > "$tools/saml-idp.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$saml_port/health" saml-idp
export GROUNDWORK_SAML_IDP_URL="http://127.0.0.1:$saml_port"

# The SDK must never reach for real credentials or a real region in tests.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN || true

# 3. Formatting and lints.
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# Cargo unifies features within one build, so the workspace build above has every part of
# shared. Each function is packaged on its own, with only its features: check it that way.
# A pass per function would re-check shared eleven times; functions that build identically
# (infra/function_groups.py says which) are checked together, which lends none of them a
# feature it does not enable itself.
log "cargo clippy, each function alone (grouped when they build identically)"
"$venv/bin/python" infra/function_groups.py | while read -r group; do
  echo "--> $group"
  # shellcheck disable=SC2046,SC2086 # one --package per name
  cargo clippy --locked --quiet $(printf -- '--package %s ' $group) --lib --bins -- -D warnings
done

# 4. Every Rust test. The cloud-in-a-box tests (tests/tests/flows/cloud.rs) run each
# function's own bootstrap binary: build the binaries with the tests, in one build (built
# apart, they would unify features differently and compile the shared crate twice).
log "cargo build (every binary and test)"
cargo build --workspace --bins --tests --locked
log "cargo test"
export GROUNDWORK_TEST_PYTHON="$venv/bin/python"
cargo test --workspace --locked --no-fail-fast
# The contract and browser runs start the local stack `cargo test` built for its own tests
# (infra/local/tests): the same code. Built alone (`cargo build -p local`), it would lose the
# dev-only features the test build turns on in a few dependencies (tokio's test-util among
# them, never called by the binary) and recompile everything above them: minutes, for nothing.
export GROUNDWORK_BIN="$root/target/debug/groundwork"

# 5 and 6 run side by side, each with its own stack, port and data: the browser run spends
# most of its time waiting for an access token to expire, and schemathesis keeps one core.
# The browser run's output follows the contract's.
browser_log="$tools/browser.log"
infra/browser/run.sh > "$browser_log" 2>&1 &
browser=$!
pids+=("$browser")

# 5. The API contract: every answer documented, the description refusing what the code does.
log "API contract (schemathesis)"
contract_status=0
infra/contract/run.sh "$venv" || contract_status=$?

# 6. The browser: the TypeScript client and a cookie session in headless Chromium.
log "browser flow and TypeScript client (headless Chromium), run beside the contract"
browser_status=0
wait "$browser" || browser_status=$?
cat "$browser_log"
if [[ $contract_status -ne 0 || $browser_status -ne 0 ]]; then
  echo "failed: API contract (exit $contract_status), browser flow (exit $browser_status)" >&2
  exit 1
fi

# 7. The smoke suite the pipeline runs against each preview and staging, here against a
# local stack.
log "smoke suite (infra/smoke.py) and SCIM compliance (scim2-tester) against a local stack"
SCIM_COMPLIANCE_PYTHON="$venv/bin/python" infra/smoke.sh

# 8. The templates and the pipeline.
log "cfn-lint template.yaml infra/github-deploy-role.yaml"
"$venv/bin/cfn-lint" template.yaml infra/github-deploy-role.yaml
log "actionlint and zizmor .github/workflows (offline)"
"$venv/bin/actionlint" -no-color
"$venv/bin/zizmor" --offline --persona=pedantic .github/workflows
# With each environment's parameters, so conditions (production's canary and alarms...)
# resolve as they will there; previews deploy with the staging file under their own name.
log "the template per environment (cfn-lint with its parameters, sam validate --lint with its file)"
for file in infra/environments/*.toml; do
  env_name=$(basename "$file" .toml)
  # shellcheck disable=SC2046 # one argument per parameter
  "$venv/bin/cfn-lint" template.yaml --parameters $("$venv/bin/python" -c '
import shlex, sys, tomllib
print(" ".join(shlex.split(tomllib.load(open(sys.argv[1], "rb"))["default"]["deploy"]["parameters"]["parameter_overrides"])))' "$file")
  SAM_CLI_TELEMETRY=0 "$venv/bin/sam" validate --lint --region us-east-1 --config-file "$file" --template-file template.yaml
  echo "--> $env_name: clean"
done
"$venv/bin/cfn-lint" template.yaml --parameters Environment=pr-1 SmokeMailDomain=smoke.example.com
echo "--> preview (pr-1): clean"

log "all tests passed"
