"""A webhook receiver for the test command: verifies every delivery it gets with the
Standard Webhooks reference library (PyPI `standardwebhooks`, pinned in
requirements-test.txt) and keeps what it got, so tests can read whether Groundwork's
signatures verify.

Usage: python infra/webhook_receiver.py PORT

Control (JSON):
  PUT  /endpoints/NAME  {"secrets": [...], "status": 200, "location": null, "clock_offset_secs": 0}
       how endpoint NAME answers: the secrets it verifies with (any one may match), the
       status it answers verified deliveries with, a `Location` to send (a redirect), and
       how far its clock is ahead of this machine's (tests that move Groundwork's clock move
       the receiver's with it, as a receiver whose clock agrees with the sender's would be).
  POST /hooks/NAME      a delivery: answered with the configured status when it verifies
                        with some secret, 401 when it does not.
  GET  /received/NAME   every delivery so far: {"verified", "secret_index", "error", "id",
                        "timestamp", "signature", "body"}.
"""

import datetime as _dt
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks.webhooks as reference

_local = threading.local()


class _ShiftedDatetime(_dt.datetime):
    """The reference library's `datetime`, with this thread's clock offset applied to now()."""

    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + _dt.timedelta(seconds=getattr(_local, "offset", 0))


# The library reads the time through its module's `datetime` name; verification itself is
# the library's own code.
reference.datetime = _ShiftedDatetime

_lock = threading.Lock()
_endpoints: dict = {}
_received: dict = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: the tests read /received
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _name(self, prefix: str) -> str:
        return self.path[len(prefix):].split("?")[0]

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            return self._answer(200, b"{}")
        if self.path.startswith("/received/"):
            with _lock:
                got = list(_received.get(self._name("/received/"), []))
            return self._answer(200, json.dumps(got).encode())
        self._answer(404)

    def do_PUT(self):  # noqa: N802
        if not self.path.startswith("/endpoints/"):
            return self._answer(404)
        config = json.loads(self._body() or b"{}")
        with _lock:
            _endpoints[self._name("/endpoints/")] = config
        self._answer(204)

    def do_POST(self):  # noqa: N802
        if not self.path.startswith("/hooks/"):
            return self._answer(404)
        name = self._name("/hooks/")
        body = self._body()
        with _lock:
            config = dict(_endpoints.get(name, {}))
        headers = {k: v for k, v in self.headers.items()}
        _local.offset = config.get("clock_offset_secs", 0)
        verified, index, error = False, None, None
        for i, secret in enumerate(config.get("secrets", [])):
            try:
                reference.Webhook(secret).verify(body, headers)
                verified, index = True, i
                break
            except reference.WebhookVerificationError as e:
                error = str(e)
        record = {
            "verified": verified,
            "secret_index": index,
            "error": None if verified else (error or "no secret configured"),
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "signature": self.headers.get("webhook-signature"),
            "body": body.decode("utf-8", "replace"),
        }
        with _lock:
            _received.setdefault(name, []).append(record)
        if not verified:
            return self._answer(401, json.dumps({"error": record["error"]}).encode())
        extra = {"Location": config["location"]} if config.get("location") else {}
        self._answer(int(config.get("status", 200)), b'{"ok":true}', extra)


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"webhook receiver on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
