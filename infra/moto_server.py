"""The DynamoDB/SQS API server the test command starts on loopback: moto's own server,
with three additions.

- moto applies a DynamoDB write as read-modify-write in Python without a lock, so two
  concurrent UpdateItem calls on one item can lose an increment, which real DynamoDB never
  does. Serialising DynamoDB requests restores DynamoDB's per-item atomicity; other requests
  stay concurrent (an SQS long poll must not block a send).
- With GROUNDWORK_MOTO_RECORD_CALLS=1 it records, per access key id, the IAM actions the
  requests signed with that key need (as IAM authorizes them: a DynamoDB transaction as
  each of its item actions, an S3 object request as s3:GetObject or s3:PutObject...), and
  serves them as JSON at GET /groundwork/calls; and the SES configuration set each key's
  sends named, at GET /groundwork/sends. The cloud-in-a-box harness gives each
  function its own key id and compares what it called with what its template policies allow.
- With GROUNDWORK_MOTO_RECORD_KEYS=1 it records each DynamoDB partition's reads and writes
  (moto_partition_load.py says how) and serves them at GET /groundwork/keys.

Usage: python infra/moto_server.py PORT
"""

import io
import json
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from moto_partition_load import clear_keys_record, dispatch_noting_keys, keys_record

DYNAMODB_LOCK = threading.Lock()
CALLS_LOCK = threading.Lock()
CALLS: dict[str, set[str]] = {}
# The configuration set each SES v2 send named ("" for none), per access key id: the
# harness checks that every send goes through the set whose events the template routes.
SENDS: dict[str, set[str]] = {}
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")

# DynamoDB transactions are authorized item by item, as the item's own action.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}

# Batch operations are authorized as their single-message action (SQS Developer Guide,
# "Amazon SQS API permissions: Actions and resource reference").
SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}

# The REST APIs' operations, by method and path (SES v2, S3 object and bucket requests).
SES_V2 = [("POST", re.compile(r"^/v2/email/outbound-emails$"), "ses:SendEmail")]



def caller(environ) -> tuple[str, str] | None:
    """The access key id and service of a signed request (header or presigned query)."""
    found = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found:
        return found.group(1), found.group(2)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    credential = query.get("X-Amz-Credential", [""])[0].split("/")
    if len(credential) >= 4:
        return credential[0], credential[3]
    return None


def body_of(environ) -> bytes:
    """Reads the request body and puts it back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def actions(environ, key: str, service: str) -> list[str]:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        operation = target.rsplit(".", 1)[-1]
        if target.startswith("DynamoDB_") and operation in ("TransactWriteItems", "TransactGetItems"):
            request = json.loads(body_of(environ) or b"{}")
            return sorted(
                {TRANSACT_ITEM_ACTIONS[kind] for item in request.get("TransactItems", []) for kind in item}
            )
        if target.startswith("AmazonSQS."):
            operation = SQS_BATCH.get(operation, operation)
        return [f"{service}:{operation}"]
    if service == "s3":
        parts = [p for p in path.split("/") if p]
        # Path-style: /bucket/key...; a request on the bucket itself lists or configures it.
        if len(parts) >= 2:
            # POST on an object is a multipart upload's start or completion: a write.
            return [{"PUT": "s3:PutObject", "POST": "s3:PutObject", "DELETE": "s3:DeleteObject"}.get(method, "s3:GetObject")]
        return ["s3:ListBucket" if method in ("GET", "HEAD") else f"s3:{method} {path}"]
    if service == "ses":
        for verb, pattern, action in SES_V2:
            if verb == method and pattern.match(path):
                if action == "ses:SendEmail":
                    request = json.loads(body_of(environ) or b"{}")
                    with CALLS_LOCK:
                        SENDS.setdefault(key, set()).add(request.get("ConfigurationSetName", ""))
                return [action]
        return [f"ses:{method} {path}"]
    # The query protocol (SNS, SES v1, older SQS clients) names the action in the form.
    form = parse_qs(body_of(environ).decode("utf-8", "replace"))
    action = form.get("Action", parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""]))[0]
    return [f"{service}:{action or method + ' ' + path}"]


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    record = os.environ.get("GROUNDWORK_MOTO_RECORD_CALLS") == "1"
    record_keys = os.environ.get("GROUNDWORK_MOTO_RECORD_KEYS") == "1"
    # The harness runs this server in its own process group (so a terminal's Ctrl-C leaves
    # it up for the harness's last reads); it must not outlive the harness.
    parent = os.environ.get("GROUNDWORK_MOTO_PARENT_PID")
    if parent:

        def watch_parent() -> None:
            while os.getppid() == int(parent):
                time.sleep(0.5)
            os._exit(0)

        threading.Thread(target=watch_parent, daemon=True).start()
    app = DomainDispatcherApplication(create_backend_app)

    def serve(environ, start_response):
        if record and environ.get("PATH_INFO") == "/groundwork/calls":
            with CALLS_LOCK:
                body = json.dumps({key: sorted(found) for key, found in CALLS.items()}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if record and environ.get("PATH_INFO") == "/groundwork/sends":
            with CALLS_LOCK:
                body = json.dumps({key: sorted(found) for key, found in SENDS.items()}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if record_keys and environ.get("PATH_INFO") == "/groundwork/keys":
            if environ.get("REQUEST_METHOD") == "DELETE":
                clear_keys_record()
                start_response("204 No Content", [])
                return []
            if environ.get("REQUEST_METHOD") == "GET":
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(keys_record()).encode()]
        if record:
            signed = caller(environ)
            if signed:
                key, service = signed
                needed = actions(environ, key, service)
                with CALLS_LOCK:
                    CALLS.setdefault(key, set()).update(needed)
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB_LOCK:
                if record_keys:
                    return dispatch_noting_keys(app, environ, start_response, body_of(environ))
                # Consume the whole response inside the lock.
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple("127.0.0.1", port, serve, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
