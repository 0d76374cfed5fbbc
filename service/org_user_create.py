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
from schemas.http import USER_NAME
from schemas.ids import uuid7
from schemas.users_admin import NewUser
from service import org_users
from service.amqp import Publisher
from service.intake import Intake
from service.submissions import Submission, submit_invitation, submit_registration
from service.tenants import Tenant


def user_name_for(email: str) -> str:
    """Blynk has no userName: the address is the userName where it fits the userName rule
    (3-64 of letters, digits, ._-@), else a random one the user never needs (they sign in
    with the address)."""
    if USER_NAME.fullmatch(email):
        return email
    return f"user-{uuid7().hex[-12:]}"


async def create_user(
    pool: asyncpg.Pool,
    publisher: Publisher,
    tenant: Tenant,
    form: CreateUser,
    *,
    intake: Intake,
    public_key: str,
    idempotency_key: str | None,
    fingerprint: bytes,
    grace_s: float,
) -> None:
    """Create the user, or invite them when `form` has no password; nothing when the
    address is a member already. Returns once the broker has confirmed the command."""
    if await org_users.is_member(pool, tenant_id=tenant.id, email=form.email):
        return
    if form.password is not None:
        # The back office's path (POST /{apiKey}/users): the password sealed to the
        # registration worker, which hashes it and creates the user (source admin,
        # approved, role User) from what this request recorded, not from the command.
        await submit_registration(
            pool,
            intake,
            publisher,
            Submission(
                tenant=tenant,
                form=NewUser.model_validate(
                    {
                        "userName": user_name_for(form.email),
                        "email": form.email,
                        "password": form.password,
                        "confirmPassword": form.password,
                        "name": form.name,
                        "isApproved": True,
                    }
                ),
                fingerprint=fingerprint,
                idempotency_key=idempotency_key,
                locale=form.locale or tenant.default_locale,
                admin={"name": form.name, "roles": ["user"], "isApproved": True, "notify": False},
            ),
            public_key=public_key,
        )
        return
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
