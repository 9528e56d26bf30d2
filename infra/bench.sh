#!/usr/bin/env bash
# Runs every benchmark and prints the reports (numbers depend on the machine; nothing here
# asserts a time):
#   - the embedded store's get/put/query/transaction (criterion);
#   - emails rendered per second, and jobs per second through the embedded queue
#     (enqueue → consume → ack) (criterion);
#   - GET /health through the full router (criterion);
#   - access-token verification, an authenticated request, a refresh rotation and a login
#     with argon2id (criterion);
#   - logins at saturation and past the hashing queue's bound (rate, p50/p99, CPU per
#     login, peak memory, refusals);
#   - the membership check + a tenant-scoped read at a fixed request rate (p50/p99);
#   - what the rate limits and idempotent POSTs add to an authenticated request (with and
#     without them, back to back);
#   - what recording a product event adds to a request (p50/p99 with and without, back to
#     back), and the daily account-health rollup's accounts per minute;
#   - Stripe webhook ingest throughput and events applied per second;
#   - cold-start init time of the platform bootstrap binary next to a hello-world
#     lambda_runtime binary, both built in release, against a Runtime API stub.
#
#   ./infra/bench.sh peers [ROUNDS]   Groundwork side by side with Loco's REST API starter
#                                     (infra/peers.py), ROUNDS back-to-back rounds (2)
#   ./infra/bench.sh cold-starts      every function cold on the Lambda configuration
#                                     (the loopback AWS server), next to hello-world
#   ./infra/bench.sh partitions       tenants' traffic through the cloud-in-a-box harness:
#                                     each DynamoDB partition's load, projected to a peak
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  peers)
    source infra/lib.sh
    if ! command -v hey >/dev/null; then
      echo "==> installing hey (Debian package) for the load runs"
      apt-get install -y hey >/dev/null || { echo "install hey first: apt-get install hey" >&2; exit 1; }
    fi
    peers="$PWD/.tools/peers"
    # Loco's CLI, pinned; `loco new` writes the REST API starter (SQLite, JWT auth,
    # argon2id at OWASP's cost) that the comparison runs against.
    if [[ ! -x "$peers/bin/loco" ]]; then
      echo "==> installing Loco's CLI 1.2.0"
      cargo install loco --version 1.2.0 --locked --root "$peers"
    fi
    if [[ ! -f "$peers/peer/Cargo.toml" ]]; then
      echo "==> generating Loco's REST API starter"
      (cd "$peers" && "$peers/bin/loco" new --name peer --db sqlite --bg async --assets none --allow-in-git-repo)
    fi
    # Its own workspace: it lives under this one's directory but is not part of it.
    grep -q '^\[workspace\]' "$peers/peer/Cargo.toml" || printf '\n[workspace]\n' >>"$peers/peer/Cargo.toml"
    echo "==> building both in release"
    CARGO_TARGET_DIR="$peers/target" cargo build --release --manifest-path "$peers/peer/Cargo.toml"
    cargo build --release --locked -p local --bin groundwork
    python3 infra/peers.py --groundwork target/release/groundwork --loco "$peers/target/release/peer-cli" \
      --loco-dir "$peers/peer" --rounds "${2:-2}"
    exit
    ;;
  cold-starts | partitions)
    # Both run on the cloud-in-a-box harness, built in release with every function.
    source infra/lib.sh
    ensure_venv .tools/venv infra/requirements-test.txt
    export GROUNDWORK_TEST_PYTHON="$PWD/.tools/venv/bin/python"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    cargo build --release --locked --workspace --bins --examples
    report=$([[ "$1" == cold-starts ]] && echo init || echo keys)
    target/release/examples/cloud "$report" "${@:2}"
    exit
    ;;
esac
cargo bench -p shared --bench embedded_store -- --noplot
cargo bench -p shared --bench email_and_jobs -- --noplot
cargo bench -p platform --bench health -- --noplot
cargo bench -p auth --bench auth -- --noplot
cargo bench -p auth --bench login_load
cargo bench -p tenancy --bench tenancy
cargo bench -p tenancy --bench request_guards
cargo bench -p tenancy --bench customer_success
cargo bench -p testkit --bench billing
cargo bench -p testkit --bench webhooks
cargo build --release -p platform --bin platform -p testkit --example hello_lambda --example init_time
target/release/examples/init_time hello=target/release/examples/hello_lambda platform=target/release/platform
