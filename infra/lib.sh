# Helpers sourced by the infra/ scripts.

# ensure_venv DIR REQUIREMENTS: a Python virtualenv at DIR holding exactly the pinned
# REQUIREMENTS, (re)installed only when that file changes.
ensure_venv() {
  local venv=$1 requirements=$2
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "==> installing $(basename "$requirements") into ${venv#"$PWD"/}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
}

# The release id baked into the binaries (GROUNDWORK_RELEASE, read by `shared::RELEASE`):
# the workspace version and the commit, `-dirty` when the tree has uncommitted changes.
release_id() {
  local version commit
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if ! git diff --quiet HEAD 2>/dev/null; then
    commit="$commit-dirty"
  fi
  echo "$version+$commit"
}

# stack_name ENVIRONMENT: the environment's stack, as its file in infra/environments/ names
# it, or `groundwork-<environment>` (preview stacks have no file).
stack_name() {
  local config="infra/environments/$1.toml"
  if [[ -f "$config" ]]; then
    sed -n 's/^stack_name = "\(.*\)"/\1/p' "$config"
  else
    echo "groundwork-$1"
  fi
}
