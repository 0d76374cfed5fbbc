"""SmtpSender and SmtpPool against a real SMTP server (aiosmtpd) that can be told to
stall, drop the connection or reply with chosen codes: a connection whose transaction
was interrupted is never reused, and a message is resent inside `send()` only when the
server surely does not have it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.conftest import Mailbox
from workers.smtp import SmtpConfig, SmtpPool, SmtpSender


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


@pytest.fixture
def scripted() -> ScriptedMailbox:
    box = ScriptedMailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture
async def sender(scripted: ScriptedMailbox) -> AsyncIterator[SmtpSender]:
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{scripted.port}?timeout=5"))
    yield sender
    await sender.close()


def message(to: str | None = None, subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "registrar@example.com"
    msg["To"] = to or f"to-{uuid.uuid4().hex[:8]}@example.com"
    msg["Subject"] = subject
    msg.set_content("hello\n")
    return msg


def to(address: str):
    return lambda m: m["To"] == address


async def test_a_send_cancelled_in_data_does_not_spoil_the_next_send_on_the_pool(
    scripted: ScriptedMailbox,
) -> None:
    """The broker went away mid-SMTP and the handler was cancelled: the next message on
    the same pooled connection must not meet the old transaction's late replies."""
    pool = SmtpPool(SmtpConfig.from_url(f"smtp://127.0.0.1:{scripted.port}?timeout=5"), size=1)
    try:
        scripted.stall_s = 1.0
        first = asyncio.create_task(pool.send(message()))
        await scripted.wait_in_data()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

        second = message(subject="second")
        async with asyncio.timeout(10):
            await pool.send(second)  # the size-1 pool got its sender back, too

        received = await scripted.wait_for(to(second["To"]), timeout=5)
        assert received["Subject"] == "second"
        assert received.get_content().strip() == "hello"
    finally:
        await pool.close()


async def test_a_connection_lost_after_the_message_body_is_not_resent_by_the_sender(
    scripted: ScriptedMailbox, sender: SmtpSender
) -> None:
    """The server may have accepted it: resending is the mailer's decision, not send()'s."""
    await sender.send(message())  # a pooled connection, so a stale-connection retry could apply
    scripted.drop_in_data = True
    msg = message()

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await sender.send(msg)

    await asyncio.sleep(0.3)
    assert len(scripted.received(to(msg["To"]))) == 1


async def test_a_pooled_connection_the_server_closed_while_idle_is_replaced_once(
    scripted: ScriptedMailbox, sender: SmtpSender
) -> None:
    await sender.send(message())
    scripted.controller.loop.call_soon_threadsafe(scripted.last_transport.close)
    # Block the loop (no await) so that the client has not yet seen the close: the
    # connection still looks alive when the next send starts.
    deadline = time.monotonic() + 5
    while not scripted.last_transport.is_closing() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    msg = message()

    await sender.send(msg)

    await scripted.wait_for(to(msg["To"]), timeout=5)
    assert scripted.connections == 2


@pytest.mark.parametrize(
    ("command", "reply"),
    [("MAIL", "503 5.5.1 Error: nested MAIL command"), ("RCPT", "550 5.1.1 no such user")],
)
async def test_a_connection_whose_transaction_failed_is_not_reused(
    scripted: ScriptedMailbox, sender: SmtpSender, command: str, reply: str
) -> None:
    scripted.replies[command] = reply
    with pytest.raises(aiosmtplib.SMTPException):
        await sender.send(message())
    scripted.replies.clear()
    msg = message()

    await sender.send(msg)

    await scripted.wait_for(to(msg["To"]), timeout=5)
    assert scripted.connections == 2
