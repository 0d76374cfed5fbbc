"""Taking a registration request: record it, publish its command, survive failures.

The gateway's view parses and shapes the answer; this module does the steps in between,
in the order that makes every failure safe:

1. record, atomically, the captcha solution as used, the pending request, and its
   command in the outbox (service.commands) for the relay after a grace period — in one
   statement shared with the requests that arrive meanwhile (service.intake);
2. publish the command and wait for the broker's confirm; the command is then marked
   published with a later statement, so the relay leaves it alone;
3. if the broker refuses: undo step 1 (the client gets a 503 and may simply retry).

A retry with the same Idempotency-Key finds the request of step 1 and publishes its
command again (same CloudEvents id: the worker applies it once).
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

import asyncpg

from schemas.events import CloudEvent, InviteRequested, RegisterRequested, envelope
from schemas.http import RegisterRequest
from schemas.ids import uuid7
from schemas.users_admin import NewUser
from service import captcha, commands, registrations
from service.amqp import BrokerUnavailable, Publisher
from service.errors import CaptchaFailed, IdempotencyKeyReused
from service.intake import Intake, PendingRequest
from service.sealing import seal
from service.tenants import Tenant

ROUTING_KEY = "register.requested"
INVITE_KEY = "invite.requested"


@dataclass(frozen=True)
class Submission:
    """What the client sent, already validated and fingerprinted: a self-registration,
    or a user an administrator creates (`admin`: what they decided beyond the form,
    recorded with the request for the worker; no captcha)."""

    tenant: Tenant
    form: RegisterRequest | NewUser
    fingerprint: bytes
    idempotency_key: str | None
    locale: str
    admin: dict[str, object] | None = None

    @property
    def challenge(self) -> str | None:
        """The captcha solution this request uses up, if its tenant asks for one."""
        if self.admin is not None or self.tenant.captcha != "pow":
            return None
        return self.form.challenge_identifier


def register_command(
    submission: Submission, request_id: uuid.UUID, *, public_key: str
) -> CloudEvent:
    """The RegisterRequested command; its CloudEvents id is the request id, so every copy
    of it (republished on retry, or by the relay) is recognisably the same command."""
    form = submission.form
    data = RegisterRequested(
        request_id=request_id,
        tenant_id=submission.tenant.id,
        email=form.email,
        user_name=form.user_name,
        locale=submission.locale,
        activation_url=form.activation_url,
        sealed_password=seal(form.password, public_key),
    )
    return envelope(data).model_copy(update={"id": request_id})


def _pending(submission: Submission, command: CloudEvent) -> PendingRequest:
    form = submission.form
    return PendingRequest(
        id=command.id,
        tenant_id=submission.tenant.id,
        idempotency_key=submission.idempotency_key,
        fingerprint=submission.fingerprint,
        email=form.email,
        user_name=form.user_name,
        locale=submission.locale,
        challenge=submission.challenge,
        admin=submission.admin,
        routing_key=ROUTING_KEY,
        command_json=command.model_dump_json(exclude_none=True),
    )


async def _undo(pool: asyncpg.Pool, submission: Submission, request_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await registrations.delete_pending(conn, request_id)
        await commands.forget_command(conn, request_id)
        if submission.challenge is not None:
            await captcha.release_solution(conn, submission.challenge)


async def _existing(
    pool: asyncpg.Pool, publisher: Publisher, submission: Submission, *, public_key: str
) -> uuid.UUID | None:
    """The id of the request recorded earlier under this Idempotency-Key, or None."""
    if submission.idempotency_key is None:
        return None
    existing = await registrations.find_by_idempotency_key(
        pool, tenant_id=submission.tenant.id, key=submission.idempotency_key
    )
    if existing is None:
        return None
    if not hmac.compare_digest(existing.body_fingerprint, submission.fingerprint):
        raise IdempotencyKeyReused("this Idempotency-Key was used with another body")
    if existing.status == "pending":
        # Its command may never have been confirmed: publishing again is safe.
        command = register_command(submission, existing.id, public_key=public_key)
        await commands.publish_recorded(pool, publisher, ROUTING_KEY, command)
    return existing.id


async def submit_registration(
    pool: asyncpg.Pool,
    intake: Intake,
    publisher: Publisher,
    submission: Submission,
    *,
    public_key: str,
) -> uuid.UUID:
    """Record and publish a registration request; returns its id once the broker has
    confirmed (or it was decided already). Raises IdempotencyKeyReused, CaptchaFailed,
    BrokerUnavailable, or a database error (the gateway answers 503 for the last two)."""
    if submission.challenge is not None:
        captcha.verify_solution(
            submission.tenant,
            identifier=submission.challenge,
            response=submission.form.challenge_response,
        )
    # Most requests are new: record first, and look for an earlier one only when the
    # Idempotency-Key turns out to be taken (one round trip for a new request).
    command = register_command(submission, uuid7(), public_key=public_key)
    pending = _pending(submission, command)
    recorded = await intake.record(pending)
    if not recorded.inserted:
        existing = await _existing(pool, publisher, submission, public_key=public_key)
        if existing is not None:
            return existing
        if not recorded.solved:
            raise CaptchaFailed(captcha.ALREADY_USED)
        # The key's request was undone (the broker refused it) since: record anew.
        return await submit_registration(pool, intake, publisher, submission, public_key=public_key)
    try:
        await publisher.publish(ROUTING_KEY, command, body=pending.command_json.encode())
    except BrokerUnavailable:
        await _undo(pool, submission, command.id)
        raise
    intake.confirmed(command.id)
    return command.id


async def submit_invitation(
    pool: asyncpg.Pool,
    publisher: Publisher,
    data: InviteRequested,
    *,
    idempotency_key: str | None,
    fingerprint: bytes,
    grace_s: float,
) -> uuid.UUID:
    """Publish an InviteRequested; returns its request id once the broker has confirmed.

    Without an Idempotency-Key nothing is recorded: the client did not ask for a
    retryable request, and the 204 comes only after the confirm. With a key, the request
    and its command are recorded first (same steps as a registration), so a retry reuses
    the request id (the worker makes one invitation per request id) and the relay
    publishes a command the broker never confirmed.
    """
    if idempotency_key is None:
        await publisher.publish(INVITE_KEY, envelope(data))
        return data.request_id
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO invite_requests (id, tenant_id, idempotency_key, body_fingerprint)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (tenant_id, idempotency_key) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
            RETURNING id, body_fingerprint, (xmax = 0) AS inserted
            """,
            data.request_id,
            data.tenant_id,
            idempotency_key,
            fingerprint,
        )
        if not hmac.compare_digest(bytes(row["body_fingerprint"]), fingerprint):
            raise IdempotencyKeyReused("this Idempotency-Key was used with another body")
        data = data.model_copy(update={"request_id": row["id"]})
        command = envelope(data).model_copy(update={"id": row["id"]})
        if row["inserted"]:
            await commands.record_command(conn, INVITE_KEY, command, grace_s=grace_s)
    try:
        await commands.publish_recorded(pool, publisher, INVITE_KEY, command)
    except BrokerUnavailable:
        if row["inserted"]:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM invite_requests WHERE id = $1", row["id"])
                await commands.forget_command(conn, row["id"])
        raise
    return command.id
