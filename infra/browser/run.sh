#!/usr/bin/env bash
# The browser test and the TypeScript client's checks:
#   1. installs what it needs: Debian's Chromium (when missing and run as root), and the
#      pinned npm packages of clients/typescript and infra/browser (npm ci, when missing or
#      when the lock file changed);
#   2. builds the local stack (the debug build), or takes the binary GROUNDWORK_BIN names;
#   3. checks that clients/typescript/src/schema.d.ts is what the API's OpenAPI document
#      generates, type-checks the client strictly, builds it, and compiles the test page;
#   4. starts the stack on a free loopback port in a fresh data directory, allowing one page
#      origin (GROUNDWORK_CORS_ORIGINS) with 60 s access tokens;
#   5. runs test.mjs: the page, served from that origin and from one the API does not allow,
#      driven in headless Chromium through a browser session (about 90 s: it waits for an
#      access token to expire, and the API allows 30 s of clock skew past that);
#   6. runs console.mjs on the same stack: accounts built over simulated days with
#      `groundwork run-schedule --at`, then the customer-success console (/ops/console)
#      driven in Chromium as a customer (refused) and as staff; its screenshot is kept in
#      target/browser-artifacts/console.png;
#   7. stops what it started. Exits non-zero on any failure.
#
#   infra/browser/run.sh
#   GROUNDWORK_BIN=path/to/groundwork infra/browser/run.sh    (skips the cargo build)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
client=clients/typescript
browser=infra/browser
step() { printf -- '--> %s\n' "$*"; }

# 1. Chromium, Node.js and the npm packages.
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    step "installing Chromium (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  else
    echo "the browser test needs Debian's Chromium at /usr/bin/chromium: run 'apt-get install chromium' as root" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "the browser test needs Node.js (20 or newer) and npm" >&2
  exit 1
fi
for dir in "$client" "$browser"; do
  if [[ ! -f $dir/node_modules/.package-lock.json ]] || [[ $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    step "installing $dir's packages (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# 2. The local stack.
if [[ -n "${GROUNDWORK_BIN:-}" ]]; then
  if [[ $GROUNDWORK_BIN == */* ]]; then
    bin=$(cd "$(dirname "$GROUNDWORK_BIN")" && pwd)/$(basename "$GROUNDWORK_BIN")
  else
    bin=$(command -v "$GROUNDWORK_BIN")
  fi
else
  step "building the local stack"
  cargo build --locked --quiet --package local --bin groundwork
  bin="$root/target/debug/groundwork"
fi

work=$(mktemp -d)
stack=
cleanup() {
  if [[ -n $stack ]]; then
    kill "$stack" 2>/dev/null || true
    wait "$stack" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# 3. The client: generated types up to date, strict type check, build; then the page.
step "checking $client/src/schema.d.ts against the API's OpenAPI document"
GROUNDWORK_BIN="$bin" "$client/generate.sh" "$work/schema.d.ts"
if ! diff -u "$client/src/schema.d.ts" "$work/schema.d.ts" > "$work/schema.diff"; then
  head -40 "$work/schema.diff" >&2
  echo "$client/src/schema.d.ts is not what the API's OpenAPI document generates (diff above)." >&2
  echo "Regenerate it and commit it: $client/generate.sh" >&2
  exit 1
fi
step "type-checking the client (tsc --noEmit, strict)"
(cd "$client" && npm run --silent check && npm run --silent build)
step "compiling the test page"
(cd "$browser" && node_modules/.bin/tsc -p tsconfig.json)

# 4. The stack, with only the settings given here.
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
api_port=$(free_port)
page_port=$(free_port)
other_port=$(free_port)
while [[ $page_port == "$api_port" ]]; do page_port=$(free_port); done
while [[ $other_port == "$api_port" || $other_port == "$page_port" ]]; do other_port=$(free_port); done
mkdir "$work/data"
unset_vars=()
while IFS= read -r name; do unset_vars+=(-u "$name"); done < <(env | sed -n 's/^\(GROUNDWORK_[A-Z0-9_]*\)=.*/\1/p')
step "starting the local stack on 127.0.0.1:$api_port (page origin http://127.0.0.1:$page_port)"
env "${unset_vars[@]}" GROUNDWORK_DATA_DIR="$work/data" GROUNDWORK_PORT="$api_port" \
  GROUNDWORK_CORS_ORIGINS="http://127.0.0.1:$page_port" GROUNDWORK_ACCESS_TOKEN_TTL_SECS=60 \
  GROUNDWORK_STAFF_EMAILS=staff-console@example.com \
  GROUNDWORK_LOG=warn "$bin" > "$work/stack.log" 2>&1 &
stack=$!
healthy() {
  node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
    "http://127.0.0.1:$api_port/health" 2>/dev/null
}
for _ in $(seq 1 150); do
  if healthy || ! kill -0 "$stack" 2>/dev/null; then break; fi
  sleep 0.2
done
if ! healthy; then
  echo "the local stack did not start; its log:" >&2
  cat "$work/stack.log" >&2
  exit 1
fi

# 5 and 6. The browser tests; a failure shows the stack's log.
browser_test() {
  local seconds=$1
  shift
  timeout "$seconds" node "$@" || {
    local status=$?
    echo "the local stack's log:" >&2
    tail -50 "$work/stack.log" >&2
    exit $status
  }
}
step "the browser session in headless Chromium"
browser_test 240 "$browser/test.mjs" "http://127.0.0.1:$api_port" "$page_port" "$other_port" "$work/data"
step "the customer-success console in headless Chromium"
browser_test 180 "$browser/console.mjs" "http://127.0.0.1:$api_port" "$work/data" "$bin" "$root/target/browser-artifacts"
