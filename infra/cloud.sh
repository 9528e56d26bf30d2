#!/usr/bin/env bash
# Cloud in a box: runs Groundwork as template.yaml deploys it, on loopback, without AWS or
# Docker (tests/src/cloud). Builds every function's bootstrap binary (debug), installs the
# pinned AWS API server (moto) into .tools/venv when missing, and starts the harness:
#   infra/cloud.sh            serve the HTTP API until Ctrl-C, then print each function's
#                             latencies, failures and calls outside its template policies
#   infra/cloud.sh journey    the critical journey on the local stack and on the harness,
#                             back to back, with each request's latency on both
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/lib.sh
ensure_venv .tools/venv infra/requirements-test.txt
export GROUNDWORK_TEST_PYTHON="$PWD/.tools/venv/bin/python"
# The SDKs must never reach for real credentials: the harness signs every call itself.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN || true
cargo build --workspace --bins --tests --locked
cargo run --quiet --locked -p testkit --example cloud -- "$@"
