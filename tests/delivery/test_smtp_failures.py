"""Email that always arrives, once: SMTP outages are retried through broker retry queues,
refusals are dead-lettered with email.failed, a replay from the DLQ delivers, and copies
of one request send one email."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.emails import request_email
from service.settings import Settings
from tests.delivery.conftest import SwitchableMailbox

REGISTRAR = str(Path(sys.executable).parent / "registrar")


async def ask_for_welcome_email(pool, org, to: str):
    async with pool.acquire() as conn, conn.transaction():
        return await request_email(
            conn, tenant_id=org.id, kind="welcome", to=to, locale="fr", name="Zoé"
        )


async def wait_until(predicate, *, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_email_sent_while_smtp_is_down_arrives_once_after_it_comes_back(
    workers, delivery_pool, org, smtp_port, delivered_events
):
    email_id = await ask_for_welcome_email(delivery_pool, org, "down@example.com")

    async def failed_at_least_once() -> bool:
        attempts = await delivery_pool.fetchval(
            "SELECT attempts FROM emails WHERE id = $1", email_id
        )
        return attempts >= 1

    await wait_until(failed_at_least_once)  # nothing listens on the SMTP port yet
    mailbox = SwitchableMailbox(smtp_port)
    mailbox.controller.start()
    try:
        event = await delivered_events("email.delivered", email_id)
        assert event["data"]["attempts"] >= 2
        message = await mailbox.wait_for(lambda m: m["To"] == "down@example.com")
        assert message["Subject"] == "Bienvenue chez Mail Co"
        assert message["From"] == "Mail Co <hello@mail.example>"
        await asyncio.sleep(1.5)  # longer than the largest retry delay
        assert len(mailbox.received(lambda m: m["To"] == "down@example.com")) == 1
        row = await delivery_pool.fetchrow(
            "SELECT status, error FROM emails WHERE id = $1", email_id
        )
        assert row["status"] == "sent" and "Connect" in row["error"]
    finally:
        mailbox.controller.stop()


async def test_a_550_is_dead_lettered_with_email_failed_and_a_replay_delivers(
    workers, delivery_pool, org, smtp_port, delivered_events, delivery_settings: Settings
):
    mailbox = SwitchableMailbox(smtp_port)
    mailbox.refuse = True
    mailbox.controller.start()
    try:
        email_id = await ask_for_welcome_email(delivery_pool, org, "refused@example.com")
        failed = await delivered_events("email.failed", email_id)
        assert failed["type"] == "registrar.email.failed.v1"
        assert "550" in failed["data"]["error"] and failed["data"]["attempts"] == 1
        status = await delivery_pool.fetchval("SELECT status FROM emails WHERE id = $1", email_id)
        assert status == "failed"

        env = {
            "PATH": "/usr/bin:/bin",
            "REGISTRAR_AMQP_URL": delivery_settings.amqp_url,
            "REGISTRAR_AMQP_PREFIX": delivery_settings.amqp_prefix,
            "REGISTRAR_RETRY_DELAYS_S": json.dumps(list(delivery_settings.retry_delays_s)),
        }
        listing = subprocess.run(
            [REGISTRAR, "dlq", "list"], env=env, capture_output=True, text=True, check=True
        )
        mailer_dlq = [json.loads(line) for line in listing.stdout.splitlines()][-1]
        assert mailer_dlq["worker"] == "mailer" and mailer_dlq["messages"] == 1
        assert mailer_dlq["sample"][0]["type"] == "registrar.email.requested.v1"

        mailbox.refuse = False
        replay = subprocess.run(
            [REGISTRAR, "dlq", "replay", "mailer"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(replay.stdout) == {"queue": "mailer", "replayed": 1}
        await delivered_events("email.delivered", email_id)
        message = await mailbox.wait_for(lambda m: m["To"] == "refused@example.com")
        assert message["Subject"] == "Bienvenue chez Mail Co"
        status = await delivery_pool.fetchval("SELECT status FROM emails WHERE id = $1", email_id)
        assert status == "sent"
    finally:
        mailbox.controller.stop()


class SlowMailbox(SwitchableMailbox):
    """Takes its time over DATA, so that copies of a request overlap."""

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(0.5)
        return await super().handle_DATA(server, session, envelope)


async def test_copies_of_one_email_request_send_one_email(
    workers, delivery_pool, org, smtp_port, delivered_events
):
    """Three email.requested commands for one email (as a redelivery or a replayed
    outbox row would make): one message, one email.delivered."""
    mailbox = SlowMailbox(smtp_port)
    mailbox.controller.start()
    try:
        async with delivery_pool.acquire() as conn, conn.transaction():
            email_id = await request_email(
                conn, tenant_id=org.id, kind="welcome", to="copies@example.com", locale="en"
            )
            for _ in range(2):
                await conn.execute(
                    "INSERT INTO outbox (event_id, routing_key, body) "
                    "SELECT $2, routing_key, body FROM outbox "
                    "WHERE routing_key = 'email.requested' "
                    "AND body->'data'->>'emailId' = $1 LIMIT 1",
                    str(email_id),
                    uuid.uuid4(),
                )
        await delivered_events("email.delivered", email_id)
        await asyncio.sleep(2.5)  # the copies' retries (0.3 + 0.6 + 1.2 s) are over
        assert len(mailbox.received(lambda m: m["To"] == "copies@example.com")) == 1
        delivered = await delivery_pool.fetchval(
            "SELECT count(*) FROM outbox WHERE routing_key = 'email.delivered' "
            "AND body->'data'->>'emailId' = $1",
            str(email_id),
        )
        assert delivered == 1
        status = await delivery_pool.fetchval("SELECT status FROM emails WHERE id = $1", email_id)
        assert status == "sent"
    finally:
        mailbox.controller.stop()


@pytest.mark.parametrize("queue", ["nonsense", "registrar.nothing"])
def test_replaying_an_unknown_queue_is_a_clear_error(queue, delivery_settings: Settings):
    env = {"PATH": "/usr/bin:/bin", "REGISTRAR_AMQP_PREFIX": delivery_settings.amqp_prefix}
    done = subprocess.run(
        [REGISTRAR, "dlq", "replay", queue], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "unknown queue" in done.stderr
