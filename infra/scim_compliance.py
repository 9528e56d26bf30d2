"""SCIM 2.0 compliance of a Groundwork stack's directory endpoints, checked by scim2-tester
(RFC 7643/7644: discovery documents, create, read, list with attribute selection, search,
replace, PATCH add/replace/remove of every attribute, delete, unknown paths).

Usage: python infra/scim_compliance.py BASE_URL

Sets up what a directory needs as a customer would: a new user (through the smoke mailbox,
as infra/smoke.py does), an organization and its directory token; then runs every check of
scim2-tester against BASE_URL/scim/v2 with that token. Prints each result; exits 1 when a
check reports an error or a critical finding (a MUST of the RFCs broken), 0 otherwise.

Environment: GROUNDWORK_OPERATOR_TOKEN and GROUNDWORK_SMOKE_MAIL_DOMAIN, as for smoke.py.
"""

import os
import secrets
import sys
import time

from httpx2 import Client as HttpClient
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smoke import Client, Failed, new_user  # noqa: E402

FAILING = {Status.ERROR, Status.CRITICAL}


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith(("http://", "https://")):
        sys.exit(__doc__)
    base = sys.argv[1].rstrip("/")
    operator = os.environ.get("GROUNDWORK_OPERATOR_TOKEN") or sys.exit("GROUNDWORK_OPERATOR_TOKEN is not set")
    domain = (os.environ.get("GROUNDWORK_SMOKE_MAIL_DOMAIN") or sys.exit("GROUNDWORK_SMOKE_MAIL_DOMAIN is not set")).strip().lower()
    api = Client(base)
    run = f"{int(time.time())}-{secrets.token_hex(3)}"
    try:
        admin = new_user(api, operator, f"scim-{run}@{domain}")
        _, org = api.call("POST", "/organizations", {"name": f"SCIM compliance {run}"}, admin, want=(201,))
        _, issued = api.call("POST", f"/organizations/{org['id']}/scim/token", None, admin, want=(201,))
    except (Failed, OSError) as e:
        print(f"FAIL setting up the directory: {e}", file=sys.stderr)
        return 1
    # BASE_URL, not the stack's configured public URL: the checker may run beside the stack.
    http = HttpClient(base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {issued['token']}"}, timeout=30)
    results = check_server(SyncSCIMClient(http))
    counts = {}
    for result in results:
        counts[result.status.name] = counts.get(result.status.name, 0) + 1
        where = f"[{result.resource_type}] " if result.resource_type else ""
        line = f"{result.status.name:<10} {where}{result.title}: {result.reason or ''}"
        print(line[:400], flush=True)
    failed = sum(1 for r in results if r.status in FAILING)
    passed = sum(1 for r in results if r.status not in FAILING | {Status.SKIPPED})
    print(", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
    print(f"scim2-tester: {passed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
