"""Schemathesis hooks for the API contract run (infra/contract/run.sh).

Authentication: a verified user is signed up through the API itself (the verification link
is read from the local stack's outbox), and every generated request carries a live access
token. The stateful phase calls the logout and session-revocation routes, which end the
token in use; so the token is checked before each use and the user logs in again when it
has been ended, instead of the rest of the run seeing only 401s.

The fuzzer's own failed logins rightly trip the per-IP login limit. The runner signs in as
a client of its own: the stack runs with one trusted proxy (GROUNDWORK_TRUSTED_PROXIES=1),
and the runner's calls carry X-Forwarded-For with an address from TEST-NET-1 (RFC 5737).
"""

import glob
import json
import os
import uuid
import threading
import re
import time
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["CONTRACT_BASE_URL"]
OUTBOX = os.environ["CONTRACT_OUTBOX"]
PASSWORD = "contract-runner-violet-anchor-47"
RUNNER_ADDRESS = "192.0.2.7"


def _call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
    req.add_header("x-forwarded-for", RUNNER_ADDRESS)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            text = res.read()
            return res.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


# The runner's identity. The fuzzer's wrong passwords on routes that re-authenticate (erasing
# the account, changing the password) count against the runner's address, as they should;
# when that limit or an erasure ends an identity, the runner signs up as a new one.
_identity = 0


def _email():
    return f"contract-runner-{_identity}@example.com"


def _verification_token():
    for _ in range(100):
        for path in sorted(glob.glob(os.path.join(OUTBOX, "*.eml"))):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read().replace("=\n", "")
            if _email() in text and "verify" in text:
                found = re.search(r"token=3D([A-Za-z0-9_-]+)|token=([A-Za-z0-9_-]+)", text)
                if found:
                    return found.group(1) or found.group(2)
        time.sleep(0.1)
    raise RuntimeError("no verification email for the contract runner in " + OUTBOX)


def _login():
    global _identity
    status, body = _call("POST", "/auth/login", {"email": _email(), "password": PASSWORD})
    if status == 200:
        return body["access_token"]
    if status not in (401, 429):
        raise RuntimeError(f"login answered {status}: {body}")
    # First use, or the identity was ended: sign up a new one and prove the address.
    _identity += 1
    status, body = _call("POST", "/auth/signup", {"email": _email(), "password": PASSWORD})
    if status != 202:
        raise RuntimeError(f"sign-up answered {status}: {body}")
    status, body = _call("POST", "/auth/verify-email", {"token": _verification_token()})
    if status != 200:
        raise RuntimeError(f"verification answered {status}: {body}")
    status, body = _call("POST", "/auth/login", {"email": _email(), "password": PASSWORD})
    if status != 200:
        raise RuntimeError(f"login after verification answered {status}: {body}")
    return body["access_token"]


_token = None
_lock = threading.Lock()
_features_on = False


def _enable_example_feature():
    """The example product function (projects) answers 403 until its feature flag is on:
    turn it on, so the run reaches its code."""
    flag = {"description": "the example product function", "enabled": True, "rollout_percent": 100}
    status, body = _call("PUT", "/ops/flags/projects", flag, token=os.environ["GROUNDWORK_OPERATOR_TOKEN"])
    if status != 200:
        raise RuntimeError(f"turning the projects flag on answered {status}: {body}")


@schemathesis.auth(refresh_interval=None)
class LiveToken:
    def get(self, case, context):
        global _token, _features_on
        with _lock:
            if not _features_on:
                _enable_example_feature()
                _features_on = True
            if _token is None or _call("GET", "/me", token=_token)[0] != 200:
                _token = _login()
            return _token

    def set(self, case, data, context):
        case.headers = case.headers or {}
        # The fuzzer draws the same few keys for different bodies, which the API rightly
        # refuses (422 idempotency_key_reused; tested in shared/tests/idempotency.rs). A
        # valid key is made unique per request; an invalid one is left to be refused.
        key = case.headers.get("Idempotency-Key")
        if isinstance(key, str) and 1 <= len(key.encode("latin-1", "replace")) <= 255 and not any(
            ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in key
        ):
            case.headers["Idempotency-Key"] = str(uuid.uuid4())
        if case.path.startswith("/ops/"):
            case.headers["Authorization"] = "Bearer " + os.environ["GROUNDWORK_OPERATOR_TOKEN"]
        else:
            case.headers["Authorization"] = f"Bearer {data}"
