#!/usr/bin/env bash
# Builds every function as an arm64 Lambda bootstrap (release profile, cargo-lambda with
# zig as the cross linker), zips each, and prints the sizes. Output: target/lambda/<name>/.
#   ./infra/package.sh            all functions
#   ./infra/package.sh platform   one function
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.tools/build"
source infra/lib.sh
ensure_venv "$venv" "$root/infra/requirements-build.txt"
export PATH="$venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null
GROUNDWORK_RELEASE=$(release_id)
export GROUNDWORK_RELEASE
echo "==> release $GROUNDWORK_RELEASE"

functions=("$@")
if [[ ${#functions[@]} -eq 0 ]]; then
  for manifest in functions/*/Cargo.toml; do
    functions+=("$(basename "$(dirname "$manifest")")")
  done
fi
# One cargo invocation per function: Cargo unifies features across the packages of one
# build, so building them together would link every function with every part of shared.
# Dependencies compile once; shared compiles once per distinct feature set.
for f in "${functions[@]}"; do
  echo "==> building $f for arm64 (release)"
  cargo lambda build --release --arm64 --output-format zip --package "$f" --bin "$f"
done
echo
printf '%-20s %14s %12s\n' function "bootstrap" "zip"
for f in "${functions[@]}"; do
  zip="target/lambda/$f/bootstrap.zip"
  unzipped=$(python3 -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$zip")
  printf '%-20s %12s B %10s B\n' "$f" "$unzipped" "$(stat -c %s "$zip")"
done
