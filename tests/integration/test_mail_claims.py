"""send_email claims an email before talking SMTP, against the real PostgreSQL and a
scripted aiosmtpd: copies of one request (redelivered, concurrent, left behind by a
killed or cancelled handler) send it at most once, and SMTP replies are classified."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from email.message import EmailMessage

import asyncpg
import pytest
from prometheus_client import REGISTRY

from service.errors import PermanentError, RetryableError
from service.settings import Settings
from service.tenants import Tenant
from tests.integration.conftest import MakeTenant
from tests.integration.test_mailer import (
    addressed_to,
    command_of,
    delivered_events,
    mail_settings,
    requested_email,
)
from workers import mailer
from workers.smtp import SmtpConfig, SmtpSender


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


@pytest.fixture
def smtp(sender: SmtpSender) -> SmtpSender:
    return sender


@pytest.fixture
def send(pool: asyncpg.Pool, settings: Settings, token_key: bytes, private_key: str, smtp):
    """send_email as cli/workers.py wires it, with a lease that tests may shorten."""

    async def send(data, *, lease_s: float = 120.0, sender=smtp, db=pool) -> None:
        config = dataclasses.replace(
            mail_settings(token_key, settings, private_key), lease_s=lease_s
        )
        await mailer.send_email(*command_of(data), pool=db, sender=sender, settings=config)

    return send


async def row_of(pool: asyncpg.Pool, email_id: uuid.UUID) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT status, attempts, error, sent_at, lease_until FROM emails WHERE id = $1",
        email_id,
    )


def takeovers() -> float:
    value = REGISTRY.get_sample_value(
        "registrar_email_lease_takeovers_total", {"kind": "activation"}
    )
    return value or 0.0


async def set_lease(pool: asyncpg.Pool, email_id: uuid.UUID, seconds: float) -> None:
    """Leave the row as a copy holding a claim would (expired if `seconds` < 0)."""
    await pool.execute(
        "UPDATE emails SET status = 'sending', attempts = attempts + 1, "
        "lease_until = now() + make_interval(secs => $2) WHERE id = $1",
        email_id,
        seconds,
    )


@pytest.mark.parametrize(
    ("command", "reply", "fate"),
    [
        ("MAIL", "421 4.3.2 closing connection", RetryableError),
        ("MAIL", "503 5.5.1 Error: nested MAIL command", RetryableError),
        ("RCPT", "451 4.3.0 try again later", RetryableError),
        ("RCPT", "503 5.5.1 bad sequence of commands", RetryableError),
        ("DATA", "451 4.3.0 local error in processing", RetryableError),
        ("RCPT", "550 5.1.1 mailbox unavailable", PermanentError),
        ("DATA", "554 5.7.1 message refused", PermanentError),
    ],
)
async def test_a_failed_smtp_reply_releases_the_claim_and_decides_the_fate(
    pool, tenant, scripted, send, command, reply, fate
) -> None:
    data = await requested_email(pool, tenant)
    scripted.replies[command] = reply

    with pytest.raises(fate):
        await send(data)

    row = await row_of(pool, data.email_id)
    assert (row["status"], row["lease_until"], row["attempts"]) == ("pending", None, 1)
    assert reply[:3] in row["error"]
    assert await delivered_events(pool, data.email_id) == []


async def test_two_concurrent_copies_send_one_email_and_the_loser_retries_later(
    pool, tenant, scripted, send
) -> None:
    data = await requested_email(pool, tenant)
    scripted.stall_s = 0.3  # the first copy is mid-SMTP when the second one looks
    other = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{scripted.port}"))
    try:
        outcomes = await asyncio.gather(
            send(data), send(data, sender=other), return_exceptions=True
        )
    finally:
        await other.close()

    [error] = [o for o in outcomes if o is not None]
    assert isinstance(error, RetryableError) and "another copy" in str(error)
    await asyncio.sleep(0.3)
    assert len(scripted.received(addressed_to(data.to))) == 1
    assert len(await delivered_events(pool, data.email_id)) == 1
    row = await row_of(pool, data.email_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("sent", 1, None)


async def test_copies_claiming_at_the_same_instant_leave_one_claim(pool, tenant) -> None:
    """The claim is one statement: copies that meet on the row lock see the winner's
    lease once it commits, however many there are."""
    data = await requested_email(pool, tenant)
    command = command_of(data)[1]

    outcomes = await asyncio.gather(
        *(mailer.claim(pool, command, lease_s=60) for _ in range(8)), return_exceptions=True
    )

    claimed = [o for o in outcomes if isinstance(o, tuple)]
    assert len(claimed) == 1
    assert all(isinstance(o, RetryableError) for o in outcomes if o is not claimed[0])
    content, row = claimed[0]
    assert content.email_id == data.email_id and row["organization"] == tenant.name
    row = await row_of(pool, data.email_id)
    assert (row["status"], row["attempts"]) == ("sending", 1)


async def test_a_copy_redelivered_after_sending_sends_nothing(pool, tenant, scripted, send) -> None:
    data = await requested_email(pool, tenant)
    await send(data)

    await send(data)

    assert len(scripted.received(addressed_to(data.to))) == 1
    assert (await row_of(pool, data.email_id))["attempts"] == 1


async def test_a_live_lease_of_another_copy_is_left_alone(pool, tenant, scripted, send) -> None:
    data = await requested_email(pool, tenant)
    await set_lease(pool, data.email_id, 60)
    before = takeovers()

    with pytest.raises(RetryableError, match="another copy"):
        await send(data)

    assert scripted.received(addressed_to(data.to)) == []
    assert takeovers() == before
    row = await row_of(pool, data.email_id)
    assert (row["status"], row["attempts"]) == ("sending", 1)


async def test_an_expired_lease_is_taken_over_and_counted(pool, tenant, scripted, send) -> None:
    data = await requested_email(pool, tenant)
    await set_lease(pool, data.email_id, -1)
    before = takeovers()

    await send(data)

    await scripted.wait_for(addressed_to(data.to), timeout=5)
    assert takeovers() == before + 1
    row = await row_of(pool, data.email_id)
    assert (row["status"], row["attempts"], row["lease_until"]) == ("sent", 2, None)
    [delivered] = await delivered_events(pool, data.email_id)
    assert delivered["data"]["attempts"] == 2


async def test_a_handler_cancelled_mid_smtp_keeps_its_claim_until_the_lease_expires(
    pool, tenant, scripted, send
) -> None:
    """The outcome is unknown (the server may have the message): no copy may send while
    the lease lasts; after it, one takes over, and that is counted."""
    data = await requested_email(pool, tenant)
    scripted.stall_s = 5
    handler = asyncio.create_task(send(data, lease_s=1.0))
    await scripted.wait_in_data()
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert (await row_of(pool, data.email_id))["status"] == "sending"
    scripted.stall_s = 0

    with pytest.raises(RetryableError):
        await send(data)
    await asyncio.sleep(1.2)
    before = takeovers()
    await send(data)

    assert takeovers() == before + 1
    assert len(scripted.received(addressed_to(data.to))) == 1  # the server dropped the first
    assert (await row_of(pool, data.email_id))["status"] == "sent"


async def test_a_render_failure_releases_the_claim(pool, tenant, scripted, send) -> None:
    data = await requested_email(pool, tenant, activation_token_id=None)

    with pytest.raises(PermanentError):
        await send(data)

    row = await row_of(pool, data.email_id)
    assert (row["status"], row["lease_until"]) == ("pending", None)
    assert "PermanentError" in row["error"]
    assert scripted.received(addressed_to(data.to)) == []


async def test_an_email_without_its_row_is_a_permanent_error(pool, tenant, send) -> None:
    data = (await requested_email(pool, tenant)).model_copy(update={"email_id": uuid.uuid4()})
    with pytest.raises(PermanentError):
        await send(data)


async def test_a_database_blip_after_the_server_accepted_does_not_lose_the_record(
    pool, tenant, scripted, send, smtp
) -> None:
    """The commit after the 250 is retried, so the email is not sent again later."""
    data = await requested_email(pool, tenant)
    flaky = FlakyPool(pool)

    class FailDatabaseAfterSending:
        async def send(self, message: EmailMessage) -> None:
            await smtp.send(message)
            flaky.failures = 2

    await send(data, sender=FailDatabaseAfterSending(), db=flaky)

    assert flaky.failures == 0
    assert (await row_of(pool, data.email_id))["status"] == "sent"
    assert len(await delivered_events(pool, data.email_id)) == 1
    assert len(scripted.received(addressed_to(data.to))) == 1


class FlakyPool:
    """A pool whose next `failures` acquires fail as during a database restart."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.failures = 0

    def acquire(self):
        if self.failures:
            self.failures -= 1
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        return self._pool.acquire()

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


async def test_record_failure_never_overwrites_a_sent_email(pool, tenant, scripted, send) -> None:
    data = await requested_email(pool, tenant)
    await send(data)

    await mailer.record_failure(*command_of(data), pool=pool, error="gave up: late copy")

    assert (await row_of(pool, data.email_id))["status"] == "sent"
    assert await failed_events(pool, data.email_id) == 0


async def test_record_failure_leaves_a_live_claim_to_its_holder(pool, tenant) -> None:
    data = await requested_email(pool, tenant)
    await set_lease(pool, data.email_id, 60)

    await mailer.record_failure(*command_of(data), pool=pool, error="gave up waiting")

    assert (await row_of(pool, data.email_id))["status"] == "sending"
    assert await failed_events(pool, data.email_id) == 0


async def test_record_failure_marks_an_abandoned_claim_failed_and_clears_its_lease(
    pool, tenant
) -> None:
    data = await requested_email(pool, tenant)
    await set_lease(pool, data.email_id, -1)

    await mailer.record_failure(*command_of(data), pool=pool, error="gave up")

    row = await row_of(pool, data.email_id)
    assert (row["status"], row["lease_until"], row["error"]) == ("failed", None, "gave up")
    assert await failed_events(pool, data.email_id) == 1


async def test_a_copy_replayed_after_the_email_failed_sends_it(
    pool, tenant, scripted, send
) -> None:
    """`registrar dlq replay mailer` means: try again now that the cause is fixed."""
    data = await requested_email(pool, tenant)
    await mailer.record_failure(*command_of(data), pool=pool, error="550 refused")

    await send(data)

    await scripted.wait_for(addressed_to(data.to), timeout=5)
    assert (await row_of(pool, data.email_id))["status"] == "sent"


async def failed_events(pool: asyncpg.Pool, email_id: uuid.UUID) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'email.failed' "
        "AND body->'data'->>'emailId' = $1",
        str(email_id),
    )
