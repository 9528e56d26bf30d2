"""Groundwork side by side with Loco's REST API starter (the Rust "Rails": axum, SQLite,
argon2id at the same OWASP cost, JWT auth), back to back on one machine, with the same `hey`
flags for both, and one table with both, their ratio, server CPU per request and peak
memory. `infra/bench.sh peers` builds both and runs this; only the ratios carry between
machines.

Each round starts each server fresh (alternating which goes first), signs one user up and
verifies them, then runs, against that server alone:
  - an authenticated read (Groundwork `GET /me`, Loco `GET /api/auth/current`),
    `hey -z 15s -c 32` (as fast as it answers);
  - the same read at about 1,000 requests/s, `hey -z 15s -q 50 -c 20`;
  - login by 8 clients at once for 10 s, each as its own user (`hey -z 10s -c 1`, eight
    processes: Groundwork lets at most 5 logins of one address be in flight, counted before
    the password is checked, so 8 clients on one address would measure that limit).
Server CPU per request is the server process's utime + stime (`/proc/<pid>/stat`) over the
run divided by the requests answered; peak memory is `VmHWM` (`/proc/<pid>/status`) after
the reads and after the logins.

Usage: python infra/peers.py --groundwork BIN --loco BIN --loco-dir DIR [--rounds 2]
"""

import argparse
import csv
import email
import io
import email.policy
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "correct horse battery staple 1"
EMAIL = "peer{}@example.com"
CLIENTS = 8
TICKS = os.sysconf("SC_CLK_TCK")

RUNS = [
    ("read c=32", ["-z", "15s", "-c", "32"], "read"),
    ("read ~1,000/s", ["-z", "15s", "-q", "50", "-c", "20"], "read"),
    ("login c=8", ["-z", "10s", "-c", "1"], "login"),
]


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    answered: int
    errors: int
    cpu_us: float


@dataclass
class Round:
    runs: dict[str, Result] = field(default_factory=dict)
    hwm_after_reads_mb: float = 0.0
    hwm_after_logins_mb: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {"text": text.decode("utf-8", "replace")}


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; `fields` starts at field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hey(args: list[str], url: str, pid: int) -> Result:
    before = cpu_seconds(pid)
    out = subprocess.run(["hey", *args, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - before
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentile = lambda p: float(re.search(rf"{p}% in ([\d.]+) secs", out).group(1)) * 1000
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    answered = codes.get(200, 0)
    errors = sum(n for c, n in codes.items() if c != 200)
    # Connection errors and timeouts, under "Error distribution:" as `[count]\tGet "…": …`.
    errors += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+(?:Get|Post)", out, re.MULTILINE))
    return Result(rate, percentile(50), percentile(99), answered, errors, cpu / max(answered, 1) * 1e6)


def hey_clients(runs: list[list[str]], url: str, pid: int) -> Result:
    """Runs one `hey` per argument list at once, with every response in CSV (`-o csv`), and
    sums them: the rate is the answers over the longest run, percentiles over all answers."""
    before = cpu_seconds(pid)
    processes = [
        subprocess.Popen(["hey", *args, "-o", "csv", url], stdout=subprocess.PIPE, text=True) for args in runs
    ]
    outputs = [p.communicate()[0] for p in processes]
    cpu = cpu_seconds(pid) - before
    latencies, errors, span = [], 0, 0.0
    for out in outputs:
        for row in csv.DictReader(io.StringIO(out)):
            seconds, offset = float(row["response-time"]), float(row["offset"])
            span = max(span, offset + seconds)
            if row["status-code"] == "200":
                latencies.append(seconds * 1000)
            else:
                errors += 1
    latencies.sort()
    at = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    answered = len(latencies)
    return Result(answered / span if span else 0.0, at(0.5), at(0.99), answered, errors, cpu / max(answered, 1) * 1e6)


def wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited during start-up ({process.returncode}); see its log")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within {seconds} s")


class Groundwork:
    name = "Groundwork"

    def __init__(self, binary: str):
        self.binary = binary

    def start(self, data: Path, log) -> subprocess.Popen:
        self.port = free_port()
        self.data = data
        env = {
            **os.environ,
            "GROUNDWORK_PORT": str(self.port),
            "GROUNDWORK_DATA_DIR": str(data),
            # One user sends every request of the read runs: the per-user rate limit (a
            # product setting, not a security parameter) would refuse most of them. Each
            # request still pays for the limiter's write.
            "GROUNDWORK_USER_REQUESTS_PER_SECOND": "1000000",
            "GROUNDWORK_USER_REQUEST_BURST": "1000000",
        }
        process = subprocess.Popen([self.binary], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(f"{self.base}/health", process)
        return process

    def user(self, n: int) -> str:
        address = EMAIL.format(n)
        status, body = call("POST", f"{self.base}/auth/signup", {"email": address, "password": PASSWORD})
        assert status == 202, (status, body)
        token = None
        for _ in range(100):
            for eml in sorted((self.data / "outbox").glob("*.eml")):
                message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
                if address not in str(message["To"]):
                    continue
                text = message.get_body(preferencelist=("plain",)).get_content()
                found = re.search(r"token=([A-Za-z0-9_.~-]+)", text)
                if found:
                    token = found.group(1)
            if token:
                break
            time.sleep(0.1)
        assert token, f"no verification email to {address} in the outbox"
        status, body = call("POST", f"{self.base}/auth/verify-email", {"token": token})
        assert status == 200, (status, body)
        status, body = call("POST", f"{self.base}/auth/login", {"email": address, "password": PASSWORD})
        assert status == 200, (status, body)
        return body["access_token"]

    def read_url(self) -> str:
        return f"{self.base}/me"

    def login(self, n: int) -> tuple[str, dict]:
        return f"{self.base}/auth/login", {"email": EMAIL.format(n), "password": PASSWORD}


class Loco:
    name = "Loco"

    def __init__(self, binary: str, directory: str):
        self.binary = binary
        self.directory = directory

    def start(self, data: Path, log) -> subprocess.Popen:
        self.port = free_port()
        self.database = data / "peer.sqlite"
        env = {
            **os.environ,
            "LOCO_ENV": "production",
            "DATABASE_URL": f"sqlite://{self.database}?mode=rwc",
            # HS512: jsonwebtoken refuses a key shorter than the hash (64 bytes).
            "JWT_SECRET": secrets.token_hex(32),
            # Its welcome email goes nowhere (a closed port); the background worker logs it.
            "MAILER_HOST": "127.0.0.1",
            "MAILER_PORT": str(free_port()),
            "MAILER_USER": "peer",
            "MAILER_PASSWORD": "peer",
            "PORT": str(self.port),
            "BINDING": "127.0.0.1",
            "HOST": f"http://127.0.0.1:{self.port}",
        }
        process = subprocess.Popen(
            [self.binary, "start"],
            env=env,
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(f"{self.base}/_ping", process)
        return process

    def user(self, n: int) -> str:
        address = EMAIL.format(n)
        status, body = call(
            "POST", f"{self.base}/api/auth/register", {"name": "Peer", "email": address, "password": PASSWORD}
        )
        assert status == 200, (status, body)
        with sqlite3.connect(self.database) as db:
            (token,) = db.execute("SELECT email_verification_token FROM users WHERE email = ?", (address,)).fetchone()
        status, body = call("GET", f"{self.base}/api/auth/verify/{token}")
        assert status == 200, (status, body)
        status, body = call("POST", f"{self.base}/api/auth/login", {"email": address, "password": PASSWORD})
        assert status == 200, (status, body)
        return body["token"]

    def read_url(self) -> str:
        return f"{self.base}/api/auth/current"

    def login(self, n: int) -> tuple[str, dict]:
        return f"{self.base}/api/auth/login", {"email": EMAIL.format(n), "password": PASSWORD}


def run_round(server, logs: Path) -> Round:
    with tempfile.TemporaryDirectory() as data, open(logs / f"{server.name.lower()}.log", "a") as log:
        process = server.start(Path(data), log)
        try:
            token = server.user(0)
            for n in range(1, CLIENTS):
                server.user(n)
            result = Round()
            for label, flags, kind in RUNS:
                if kind == "read":
                    args = [*flags, "-H", f"Authorization: Bearer {token}"]
                    result.runs[label] = hey(args, server.read_url(), process.pid)
                    result.hwm_after_reads_mb = peak_mb(process.pid)
                else:
                    url = server.login(0)[0]
                    runs = [
                        [*flags, "-m", "POST", "-T", "application/json", "-d", json.dumps(server.login(n)[1])]
                        for n in range(CLIENTS)
                    ]
                    result.runs[label] = hey_clients(runs, url, process.pid)
                    result.hwm_after_logins_mb = peak_mb(process.pid)
                print(f"  {server.name} {label}: {result.runs[label]}", flush=True)
            return result
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groundwork", required=True)
    parser.add_argument("--loco", required=True)
    parser.add_argument("--loco-dir", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--logs", help="where the servers' logs go (default: a new temporary directory)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    logs = Path(args.logs or tempfile.mkdtemp(prefix="peers-"))
    logs.mkdir(parents=True, exist_ok=True)
    servers = [Loco(os.path.abspath(args.loco), args.loco_dir), Groundwork(os.path.abspath(args.groundwork))]
    rounds: list[dict[str, Round]] = []
    for r in range(args.rounds):
        # Alternate who goes first, so neither always gets the cooler machine.
        order = servers if r % 2 == 0 else servers[::-1]
        print(f"round {r + 1}: {' then '.join(s.name for s in order)} (logs in {logs})", flush=True)
        rounds.append({s.name: run_round(s, logs) for s in order})

    print()
    print("| measure | round | Loco | Groundwork | Groundwork ÷ Loco |")
    print("|---|---|---|---|---|")
    for label, _, _ in RUNS:
        for i, pair in enumerate(rounds, 1):
            loco, ours = pair["Loco"].runs[label], pair["Groundwork"].runs[label]
            rows = [
                ("req/s", loco.rate, ours.rate, "{:,.0f}"),
                ("p50 ms", loco.p50_ms, ours.p50_ms, "{:.1f}"),
                ("p99 ms", loco.p99_ms, ours.p99_ms, "{:.1f}"),
                ("CPU µs/request", loco.cpu_us, ours.cpu_us, "{:,.0f}"),
            ]
            for what, a, b, shape in rows:
                ratio = b / a if a else float("nan")
                print(f"| {label}: {what} | {i} | {shape.format(a)} | {shape.format(b)} | {ratio:.2f}× |")
            if loco.errors or ours.errors:
                print(f"| {label}: non-200 answers | {i} | {loco.errors} | {ours.errors} | |")
    for i, pair in enumerate(rounds, 1):
        loco, ours = pair["Loco"], pair["Groundwork"]
        print(
            f"| peak memory after reads, MB | {i} | {loco.hwm_after_reads_mb:.0f} | {ours.hwm_after_reads_mb:.0f} "
            f"| {ours.hwm_after_reads_mb / loco.hwm_after_reads_mb:.2f}× |"
        )
        print(
            f"| peak memory after logins, MB | {i} | {loco.hwm_after_logins_mb:.0f} | {ours.hwm_after_logins_mb:.0f} "
            f"| {ours.hwm_after_logins_mb / loco.hwm_after_logins_mb:.2f}× |"
        )


if __name__ == "__main__":
    main()
