"""An authoritative DNS server for the test command (PyPI `dnslib`, pinned in
requirements-test.txt), over UDP and TCP on loopback, whose TXT records are files: tests
publish a domain's verification record by writing a file, and Groundwork's verification job
asks this server (`GROUNDWORK_DNS_RESOLVER`) as it would ask a real resolver.

Usage: python infra/dns_server.py PORT ZONE_DIR

A TXT question for NAME is answered from the file ZONE_DIR/NAME (lowercase, no trailing
dot): one TXT record per non-empty line. A file holding exactly `!SERVFAIL` makes the server
answer SERVFAIL (a broken zone). No file: NXDOMAIN. Any other question type: an empty answer.
"""

import os
import sys
import time

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneDirectory(BaseResolver):
    def __init__(self, directory):
        self.directory = directory

    def resolve(self, request, handler):
        reply = request.reply()
        qname = request.q.qname
        name = str(qname).rstrip(".").lower()
        # Names become file names: nothing that could leave the directory.
        if not name or "/" in name or name.startswith("."):
            reply.header.rcode = RCODE.REFUSED
            return reply
        path = os.path.join(self.directory, name)
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        except FileNotFoundError:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if lines == ["!SERVFAIL"]:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if request.q.qtype == QTYPE.TXT:
            for line in lines:
                reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT(line), ttl=0))
        return reply


def main():
    port = int(sys.argv[1])
    directory = sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    resolver = ZoneDirectory(directory)
    logger = DNSLogger(log="-request,-reply,-truncated,-data", prefix=False)
    for tcp in (False, True):
        DNSServer(resolver, port=port, address="127.0.0.1", tcp=tcp, logger=logger).start_thread()
    print(f"DNS server on 127.0.0.1:{port} (UDP and TCP), records in {directory}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
