#!/usr/bin/env bash
# Refreshes the email domain lists the sign-up policy reads (GROUNDWORK_SIGNUP_EMAIL_POLICY),
# from the maintained projects that publish them, at the versions pinned below:
#   - disposable addresses: the disposable-email-domains project's blocklist (PyPI package
#     `disposable-email-domains`, CC0), into shared/data/disposable_email_domains.txt;
#   - free mail providers: the `free-email-domains` package (npm, MIT; HubSpot's list), into
#     shared/data/free_email_domains.txt.
#
#   infra/email-domains/update.sh            # the pinned versions
#   infra/email-domains/update.sh --latest   # the newest published, and pins them here
#
# Then review the diff, rebuild, and commit the lists with this file.
set -euo pipefail
cd "$(dirname "$0")/../.."
DISPOSABLE_VERSION=0.0.293
FREE_VERSION=1.12.6
if [[ ${1:-} == --latest ]]; then
  DISPOSABLE_VERSION=$(python3 -m pip index versions disposable-email-domains 2>/dev/null | sed -n 's/^disposable-email-domains (\(.*\))$/\1/p')
  FREE_VERSION=$(npm view free-email-domains version)
  sed -i "s/^DISPOSABLE_VERSION=.*/DISPOSABLE_VERSION=$DISPOSABLE_VERSION/; s/^FREE_VERSION=.*/FREE_VERSION=$FREE_VERSION/" "$0"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "disposable-email-domains==$DISPOSABLE_VERSION"
(cd "$work" && npm pack --silent "free-email-domains@$FREE_VERSION" > /dev/null && tar xzf free-email-domains-*.tgz)
python3 - "$work" "$DISPOSABLE_VERSION" "$FREE_VERSION" <<'PY'
import ast, glob, json, sys, zipfile
work, disposable_version, free_version = sys.argv[1:]
wheel = glob.glob(f"{work}/disposable_email_domains-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    module = ast.parse(z.read("disposable_email_domains/__init__.py").decode())
# The package is a data module (`blocklist = {...}`): read the literal, run nothing of it.
blocklist = next(
    ast.literal_eval(node.value)
    for node in module.body
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "blocklist" for t in node.targets)
)
lists = {
    "shared/data/disposable_email_domains.txt": (blocklist, f"disposable-email-domains {disposable_version} (PyPI), CC0"),
    "shared/data/free_email_domains.txt": (json.load(open(f"{work}/package/domains.json")), f"free-email-domains {free_version} (npm), MIT"),
}
for path, (domains, source) in lists.items():
    clean = sorted({d.strip().lower().rstrip(".") for d in domains if d.strip() and not d.startswith("#")})
    with open(path, "w") as f:
        f.write(f"# {source}: written by infra/email-domains/update.sh, one domain per line\n")
        f.write("\n".join(clean) + "\n")
    print(f"{path}: {len(clean)} domains from {source}")
PY
