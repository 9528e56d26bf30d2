"""The DynamoDB/SQS API server the test command starts on loopback: moto's own server,
with one difference. moto applies a DynamoDB write as read-modify-write in Python without a
lock, so two concurrent UpdateItem calls on one item can lose an increment, which real
DynamoDB never does. Serialising DynamoDB requests restores DynamoDB's per-item atomicity;
SQS requests stay concurrent (a long poll must not block a send).

Usage: python infra/moto_server.py PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

DYNAMODB_LOCK = threading.Lock()


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)

    def serialised(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB_LOCK:
                # Consume the whole response inside the lock.
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple("127.0.0.1", port, serialised, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
