#!/usr/bin/env bash
# The API contract run: starts the local stack (the debug build) on a free loopback port in
# a fresh data directory and runs schemathesis (pinned in infra/requirements-test.txt)
# against its /openapi.json with every check and the stateful phase, from a fixed seed
# (infra/contract/schemathesis.toml). Exits non-zero on any failure.
#
#   infra/contract/run.sh <python venv with schemathesis>
#   GROUNDWORK_BIN=path/to/groundwork infra/contract/run.sh ...   (skips the cargo build)
#
# To replay one failure, run the same with the seed it printed, or `st replay <id>`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=$1
data=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
operator_token="contract-operator-$(date +%s%N)"
if [[ -n "${GROUNDWORK_BIN:-}" ]]; then
  bin=$(cd "$(dirname "$GROUNDWORK_BIN")" && pwd)/$(basename "$GROUNDWORK_BIN")
else
  cargo build --locked --quiet --package local --bin groundwork
  bin="$root/target/debug/groundwork"
fi
# One trusted proxy lets the runner sign in as a client of its own (see hooks.py).
GROUNDWORK_DATA_DIR="$data" GROUNDWORK_PORT="$port" GROUNDWORK_TRUSTED_PROXIES=1 \
  GROUNDWORK_OPERATOR_TOKEN="$operator_token" GROUNDWORK_LOG=warn \
  "$bin" > "$data/stack.log" 2>&1 &
stack=$!
trap 'kill $stack 2>/dev/null || true; wait $stack 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 150); do
  "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:$port/health" 2>/dev/null && break
  sleep 0.2
done
cd "$data"  # schemathesis and hypothesis keep their caches in the working directory
PYTHONPATH="$root" SCHEMATHESIS_HOOKS=infra.contract.hooks \
  CONTRACT_BASE_URL="http://127.0.0.1:$port" CONTRACT_OUTBOX="$data/outbox" \
  GROUNDWORK_OPERATOR_TOKEN="$operator_token" \
  "$venv/bin/schemathesis" --config-file "$root/infra/contract/schemathesis.toml" \
  run "http://127.0.0.1:$port/openapi.json" --no-color || {
    status=$?
    echo "the local stack's log:" >&2
    tail -50 "$data/stack.log" >&2
    exit $status
  }
