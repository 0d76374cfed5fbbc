"""SmtpSender and SmtpPool against a real SMTP server (aiosmtpd) that can be told to
stall, drop the connection or reply with chosen codes: a connection whose transaction
was interrupted is never reused, and a message is resent inside `send()` only when the
server surely does not have it."""

from __future__ import annotations

import asyncio
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.integration.scripted_smtp import ScriptedMailbox
from workers.smtp import SmtpConfig, SmtpPool, SmtpSender


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
