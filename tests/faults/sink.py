"""An SMTP sink in a process of its own: where the mailer delivers during the fault runs.

A separate process lets smtp_outage take the mail server down the way one really goes
down (the kernel closes every socket, new connections are refused) and bring it back on
the same port. Every received message is appended to a file, one JSON line per envelope
recipient, flushed before the 250 answer: the harness counts what reached each address
across restarts, and a message the sink wrote but never confirmed (killed in between)
counts, as it would in a real inbox.

    python -m tests.faults.sink PORT FILE
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO

from aiosmtpd.smtp import SMTP

from tests.faults.child import ChildServer, json_lines, serve_from_argv


class RecordingHandler:
    """aiosmtpd handler: write one line per recipient, then accept the message."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    async def handle_DATA(self, server, session, envelope) -> str:
        headers = BytesHeaderParser().parsebytes(envelope.original_content or b"")
        for recipient in envelope.rcpt_tos:
            line = {"to": recipient.lower(), "subject": str(headers.get("Subject", ""))}
            self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        return "250 OK"


async def serve(port: int, path: Path) -> None:
    """Serve SMTP on 127.0.0.1:port until killed."""
    loop = asyncio.get_running_loop()
    with path.open("a") as out:
        handler = RecordingHandler(out)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.faults.local"),
            "127.0.0.1",
            port,
            reuse_address=True,
        )
        async with server:
            await server.serve_forever()


class Sink(ChildServer):
    """Controls the sink process from the harness: start, stop, start again, count."""

    module = "tests.faults.sink"
    what = "SMTP sink"

    def __init__(self, port: int, record: Path, log: Path) -> None:
        super().__init__(port, log, [str(port), str(record)])
        self.record = record
        record.touch()

    async def ready(self) -> bool:
        """It greets clients."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            return (await asyncio.wait_for(reader.readline(), 2)).startswith(b"220")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def received(self) -> list[dict]:
        """Every (recipient, subject) recorded so far, in arrival order."""
        return json_lines(self.record)

    def counts(self) -> Counter[str]:
        """Messages per recipient address (lower case)."""
        return Counter(entry["to"] for entry in self.received())


if __name__ == "__main__":
    serve_from_argv(serve)
