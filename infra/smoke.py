"""The end-to-end smoke suite: Groundwork's critical flows against any base URL, as a
customer's browser and inbox would go through them. The test command runs it against the
local stack; the pipeline against every preview and staging deploy.

Usage: python infra/smoke.py BASE_URL [--checkout]

Environment:
  GROUNDWORK_OPERATOR_TOKEN      the stack's operator token (reads the smoke mailbox)
  GROUNDWORK_SMOKE_MAIL_DOMAIN   the stack's smoke domain: mail to it is kept, not sent,
                                 and read back through GET /ops/smoke-mail
  SMOKE_PLAN                     the plan to check out with --checkout (default: starter)

Flows, each user new: sign-up, email verification through the emailed link, login, the
user's profile, an account, an invitation by email accepted by a second new user who then
appears among the members, and with --checkout a Stripe Checkout session (Stripe in test
mode on the stack); without it, checkout must answer 503 (no Stripe key) or give a URL.
Python's standard library only, so it runs wherever python3 does. Exits 0 when every flow
passed, 1 with the failing step otherwise.
"""

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request

PASSWORD = "smoke-" + secrets.token_urlsafe(18)


class Failed(Exception):
    pass


class Client:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None, token=None, want=(200,)):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                status, raw = res.status, res.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            answer = json.loads(raw or b"null")
        except ValueError:
            answer = raw.decode(errors="replace")
        if status not in want:
            raise Failed(f"{method} {path}: {status} (wanted {'/'.join(map(str, want))}): {answer}")
        return status, answer


def mail_token(api, operator, address, template, timeout_s=60):
    """The `token` of the newest `template` message kept for `address`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, kept = api.call("GET", "/ops/smoke-mail?to=" + urllib.request.quote(address), token=operator)
        for message in kept["messages"]:
            if message["template"] == template and "token=" in message["text"]:
                rest = message["text"].split("token=", 1)[1]
                return "".join(c for c in rest.split()[0] if c.isalnum() or c in "-_")
        time.sleep(1)
    raise Failed(f"no {template} email for {address} within {timeout_s} s")


def new_user(api, operator, address):
    """Signs `address` up, verifies it through the emailed link, logs in: the access token."""
    api.call("POST", "/auth/signup", {"email": address, "password": PASSWORD}, want=(202,))
    token = mail_token(api, operator, address, "verify_email")
    api.call("POST", "/auth/verify-email", {"token": token})
    _, tokens = api.call("POST", "/auth/login", {"email": address, "password": PASSWORD})
    if "access_token" not in tokens:
        raise Failed(f"login of {address} gave no access token: {tokens}")
    return tokens["access_token"]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    if len(args) != 1 or not args[0].startswith(("http://", "https://")) or set(flags) - {"--checkout"}:
        sys.exit(__doc__)
    checkout = "--checkout" in flags
    operator = os.environ.get("GROUNDWORK_OPERATOR_TOKEN") or sys.exit("GROUNDWORK_OPERATOR_TOKEN is not set")
    domain = os.environ.get("GROUNDWORK_SMOKE_MAIL_DOMAIN") or sys.exit("GROUNDWORK_SMOKE_MAIL_DOMAIN is not set")
    # As the stack keeps addresses: in lower case.
    domain = domain.strip().lower()
    api = Client(args[0])
    run = f"{int(time.time())}-{secrets.token_hex(3)}"
    steps = []

    def step(name, fn):
        started = time.monotonic()
        result = fn()
        steps.append(name)
        print(f"ok   {name} ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)
        return result

    try:
        step("health", lambda: api.call("GET", "/health"))
        owner = f"smoke-{run}-owner@{domain}"
        token = step("sign-up, verification by email, login", lambda: new_user(api, operator, owner))
        _, me = step("profile", lambda: api.call("GET", "/me", token=token))
        if me.get("email") != owner:
            raise Failed(f"/me is {me}")
        _, account = step("account", lambda: api.call("POST", "/accounts", {"name": f"Smoke {run}"}, token, want=(201,)))
        account_id = account["id"]
        member = f"smoke-{run}-member@{domain}"
        step("invitation", lambda: api.call("POST", f"/accounts/{account_id}/invitations",
                                            {"email": member, "role": "member"}, token, want=(201,)))
        member_token = step("invitee's sign-up, verification, login", lambda: new_user(api, operator, member))
        invite = step("invitation email", lambda: mail_token(api, operator, member, "invitation"))
        step("invitation accepted", lambda: api.call("POST", "/invitations/accept", {"token": invite}, member_token))
        _, members = step("members", lambda: api.call("GET", f"/accounts/{account_id}/members", token=token))
        emails = {m.get("email") for m in members.get("members", [])}
        if member not in emails:
            raise Failed(f"{member} is not among the members: {members}")
        plan = {"plan": os.environ.get("SMOKE_PLAN", "starter"), "interval": "monthly"}
        path = f"/accounts/{account_id}/billing/checkout"
        if checkout:
            _, redirect = step("checkout", lambda: api.call("POST", path, plan, token))
            if not str(redirect.get("url", "")).startswith("https://"):
                raise Failed(f"checkout gave no URL: {redirect}")
        else:
            status, _ = step("checkout (answers; --checkout requires a session)",
                             lambda: api.call("POST", path, plan, token, want=(200, 503)))
    # OSError covers an unreachable or silent server (URLError, timeouts).
    except (Failed, OSError, ValueError, KeyError, TypeError) as e:
        print(f"FAIL after {len(steps)} step(s): {e}", file=sys.stderr)
        return 1
    print(f"smoke suite passed against {api.base}: {len(steps)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
