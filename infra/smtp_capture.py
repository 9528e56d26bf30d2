"""A capturing SMTP server for the test command: accepts every message on loopback and
writes it, as received, to DIR/<n>.eml, so tests can read what the SMTP adapter sent.

Usage: python infra/smtp_capture.py PORT DIR
"""

import asyncio
import itertools
import pathlib
import sys

from aiosmtpd.controller import Controller


class Capture:
    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        n = next(self.counter)
        path = self.directory / f"{n:06d}.eml"
        tmp = path.with_suffix(".partial")
        header = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        tmp.write_bytes(header.encode() + envelope.original_content)
        tmp.rename(path)
        return "250 Message accepted for delivery"


def main() -> None:
    port = int(sys.argv[1])
    directory = pathlib.Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(Capture(directory), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
