"""Blynk's "create user" (SPEC §11): 204 whether the user is created or was there.

Without a password the user gets an invitation (the invitation pipeline of SPEC §4:
InviteRequested, the invitation worker, the hosted page where the invitee sets a
password); they become a user, role `User`, when they accept it. An address that is
already a user of the organization changes nothing and mails nothing.
"""

from __future__ import annotations

import asyncpg

from schemas.blynk import CreateUser
from schemas.events import InviteRequested
from schemas.ids import uuid7
from service import org_users
from service.amqp import Publisher
from service.errors import ApiError
from service.submissions import submit_invitation
from service.tenants import Tenant


class PasswordCreateUnavailable(ApiError):
    status, slug, title = 501, "not-implemented", "Not implemented"


async def create_user(
    pool: asyncpg.Pool,
    publisher: Publisher,
    tenant: Tenant,
    form: CreateUser,
    *,
    idempotency_key: str | None,
    fingerprint: bytes,
    grace_s: float,
) -> None:
    """Create the user, or invite them when `form` has no password; nothing when the
    address is a member already. Returns once the broker has confirmed the command."""
    if await org_users.is_member(pool, tenant_id=tenant.id, email=form.email):
        return
    if form.password is not None:
        # SEAM(admin-create): a user with a password is created by the worker pipeline
        # that creates users for administrators (the password sealed in transit, hashed
        # by the worker, source `admin`, approved, role `User`), which the Baasic-shaped
        # POST /{apiKey}/users brings. Until it is wired here, say so plainly.
        raise PasswordCreateUnavailable(
            "creating a user with a password is not available yet; "
            "leave out password to email the user a link to set one"
        )
    invitation = InviteRequested(
        request_id=uuid7(),
        tenant_id=tenant.id,
        email=form.email,
        locale=form.locale or tenant.default_locale,
        name=form.name,
    )
    await submit_invitation(
        pool,
        publisher,
        invitation,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        grace_s=grace_s,
    )
