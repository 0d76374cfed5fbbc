"""Commands are private (SPEC §5), with every worker running in-process on the real broker:
anything published on the public `{prefix}.events` makes no worker act, and a command on
`{prefix}.commands` names an email without describing it, so a forged or replayed one can
at most send a legitimate email to its legitimate recipient, once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from cli.workers import run_workers
from schemas.events import InviteRequested, envelope
from service.amqp import Names
from service.emails import EmailContent, store_email
from service.settings import Settings
from tests.delivery.conftest import SwitchableMailbox

QUIET_S = 1.5  # longer than a worker needs to act on a message it receives


@pytest.fixture
async def all_workers(workers, delivery_settings: Settings) -> AsyncIterator[None]:
    """Registration and invitation workers next to the session's mailer and relay."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(delivery_settings, ["registration", "invitation"], stop))
    await asyncio.sleep(0.5)
    assert not task.done(), task.exception() if task.done() else None
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=30)


@pytest.fixture
def mailbox(smtp_port: int) -> SwitchableMailbox:
    box = SwitchableMailbox(smtp_port)
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture
async def publish(amqp_connection, delivery_settings: Settings):
    """Publish a raw CloudEvent body on one of the installation's exchanges, as anyone
    with write access to it could."""
    channel = await amqp_connection.channel(publisher_confirms=True)
    names = Names(delivery_settings.amqp_prefix)

    async def publish(exchange: str, routing_key: str, body: dict) -> None:
        target = await channel.get_exchange(getattr(names, exchange))
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/cloudevents+json",
            message_id=body["id"],
            type=body["type"],
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await target.publish(message, routing_key=routing_key)

    yield publish
    await channel.close()


async def pending_email(pool, org, to: str) -> EmailContent:
    """An invitation email row as the invitation worker writes it, but whose own command
    was never published (so only the forged messages below can set it off)."""
    content = EmailContent(
        email_id=uuid.uuid4(),
        tenant_id=org.id,
        kind="invitation",
        to=to,
        locale="en",
        name="Vic",
        invitation_id=uuid.uuid4(),
    )
    async with pool.acquire() as conn:
        await store_email(conn, content)
    return content


def body_of(data) -> dict:
    return envelope(data).model_dump(mode="json")


async def test_commands_forged_on_the_public_exchange_make_no_worker_act(
    all_workers, delivery_pool, org, mailbox, publish
) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    email = await pending_email(delivery_pool, org, victim)
    invite = InviteRequested(request_id=uuid.uuid4(), tenant_id=org.id, email=victim, locale="en")

    await publish("events", "invite.requested", body_of(invite))
    await publish("events", "email.requested", body_of(email.command()))
    await asyncio.sleep(QUIET_S)

    assert mailbox.received(lambda m: m["To"] == victim) == []
    row = await delivery_pool.fetchrow(
        "SELECT status, attempts FROM emails WHERE id = $1", email.email_id
    )
    assert (row["status"], row["attempts"]) == ("pending", 0)
    invitations = await delivery_pool.fetchval(
        "SELECT count(*) FROM invitations WHERE lower(email) = lower($1)", victim
    )
    assert invitations == 0

    # Control: the same command on the internal exchange is acted on (the workers run).
    await publish("commands", "email.requested", body_of(email.command()))
    await mailbox.wait_for(lambda m: m["To"] == victim)


async def test_a_forged_recipient_is_ignored_and_a_replay_sends_nothing_new(
    all_workers, delivery_pool, org, mailbox, publish
) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    mallory = f"mallory-{uuid.uuid4().hex[:8]}@evil.example"
    email = await pending_email(delivery_pool, org, owner)
    # A forged command naming a real emailId, with content of its own: the fields are
    # not part of the command, so the mailer never sees them.
    forged = body_of(email.command())
    forged["data"] |= {"to": mallory, "kind": "welcome", "locale": "de", "name": "Mallory"}

    await publish("commands", "email.requested", forged)
    message = await mailbox.wait_for(lambda m: m["To"] == owner)
    assert message["Subject"] == "You are invited to join Mail Co"
    assert message["Content-Language"] == "en"

    # Replays (the forged one, the legitimate one) once it is sent: nothing new.
    await publish("commands", "email.requested", forged)
    await publish("commands", "email.requested", body_of(email.command()))
    await asyncio.sleep(QUIET_S)
    assert len(mailbox.received(lambda m: m["To"] == owner)) == 1
    assert mailbox.received(lambda m: mallory in str(m["To"])) == []
    row = await delivery_pool.fetchrow(
        "SELECT status, attempts FROM emails WHERE id = $1", email.email_id
    )
    assert (row["status"], row["attempts"]) == ("sent", 1)
