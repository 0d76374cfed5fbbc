"""A real SMTP server (aiosmtpd) whose replies, stalls and drops a test can script."""

from __future__ import annotations

import asyncio
import threading

from tests.conftest import Mailbox


class ScriptedMailbox(Mailbox):
    """A mailbox whose replies a test sets: `replies["MAIL"|"RCPT"|"DATA"]` answers that
    command instead of 250; `stall_s` holds DATA (after the body was read) that long;
    `drop_in_data` keeps the message and closes the connection without a reply."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[str, str] = {}
        self.stall_s = 0.0
        self.drop_in_data = False
        self.in_data = threading.Event()
        self.connections = 0
        self.last_transport = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if "RCPT" in self.replies:
            return self.replies["RCPT"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.last_transport = server.transport
        self.in_data.set()
        if self.stall_s:
            await asyncio.sleep(self.stall_s)  # cancelled if the client hangs up
        if "DATA" in self.replies:
            return self.replies["DATA"]
        reply = await super().handle_DATA(server, session, envelope)
        if self.drop_in_data:
            server.transport.close()
        return reply

    async def wait_in_data(self, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not self.in_data.is_set():
                await asyncio.sleep(0.01)
