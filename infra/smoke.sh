#!/usr/bin/env bash
# The smoke suite (infra/smoke.py) against a fresh local stack (the debug build, a free
# loopback port, its own data, a smoke mail domain): what the pipeline runs against every
# preview and staging deploy, run by the test command against the code under test; with
# SCIM_COMPLIANCE_PYTHON set (the test command's venv), infra/scim_compliance.py after it.
#   GROUNDWORK_BIN=target/debug/groundwork infra/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GROUNDWORK_BIN:?set GROUNDWORK_BIN to the local binary (target/debug/groundwork)}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
export GROUNDWORK_OPERATOR_TOKEN="smoke-operator-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export GROUNDWORK_SMOKE_MAIL_DOMAIN=smoke.example.com
GROUNDWORK_DATA_DIR="$data" GROUNDWORK_PORT="$port" GROUNDWORK_LOG=warn "$bin" &
stack=$!
trap 'kill $stack 2>/dev/null || true; wait $stack 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:$port/health" 2>/dev/null && break
  sleep 0.2
done
python3 infra/smoke.py "http://127.0.0.1:$port"
# With a Python that has scim2-tester (the test command's), the SCIM compliance check too,
# against the same stack.
if [[ -n "${SCIM_COMPLIANCE_PYTHON:-}" ]]; then
  "$SCIM_COMPLIANCE_PYTHON" infra/scim_compliance.py "http://127.0.0.1:$port"
fi
