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
set -euo pipefail
cd "$(dirname "$0")/.."
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
