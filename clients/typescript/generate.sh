#!/usr/bin/env bash
# Regenerates src/schema.d.ts, the TypeScript types of the Groundwork API, from the OpenAPI
# document the local stack prints (`groundwork openapi`, the same as GET /openapi.json).
#
#   clients/typescript/generate.sh [output file]     (default: src/schema.d.ts)
#
# Builds and runs the stack with `cargo run` from the repository root, or runs the binary
# GROUNDWORK_BIN names. Needs `npm ci` in clients/typescript first (openapi-typescript).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/src/schema.d.ts}
generator="$here/node_modules/.bin/openapi-typescript"
if [[ ! -x "$generator" ]]; then
  echo "openapi-typescript is not installed: run 'npm ci' in clients/typescript first" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ -n "${GROUNDWORK_BIN:-}" ]]; then
  "$GROUNDWORK_BIN" openapi > "$tmp/openapi.json"
else
  (cd "$root" && cargo run --quiet --locked -- openapi) > "$tmp/openapi.json"
fi
# --empty-objects-unknown: a schema `{"type": "object"}` allows any members (JSON Schema), so
# it is typed Record<string, unknown>, not openapi-typescript's default Record<string, never>.
# openapi-typescript prints a banner and a line per file; anything else is a warning to see.
if ! "$generator" "$tmp/openapi.json" --empty-objects-unknown --output "$tmp/schema.d.ts" > "$tmp/log" 2>&1; then
  cat "$tmp/log" >&2
  exit 1
fi
grep -v -e '^✨ openapi-typescript' -e '^🚀 ' "$tmp/log" >&2 || true
mv "$tmp/schema.d.ts" "$out"
