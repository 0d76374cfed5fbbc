"""Invitations as the gateway sees them: found by token hash, decided by a worker."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from service import tokens


@dataclass(frozen=True)
class Invitation:
    id: uuid.UUID
    tenant_id: uuid.UUID
    organization: str
    default_locale: str
    email: str
    locale: str
    name: str | None
    status: str
    expires_at: dt.datetime

    @property
    def usable(self) -> bool:
        """Pending and not expired: the page may show the form."""
        return self.status == "pending" and self.expires_at > dt.datetime.now(dt.UTC)


async def find_by_token(pool: asyncpg.Pool, token: str) -> Invitation | None:
    """The invitation this token belongs to (by hash), whatever its state."""
    row = await pool.fetchrow(
        """
        SELECT i.id, i.tenant_id, t.name AS organization, t.default_locale, i.email,
               i.locale, i.name, i.status, i.expires_at
          FROM invitations i JOIN tenants t ON t.id = i.tenant_id
         WHERE i.token_hash = $1
        """,
        tokens.hash_secret(token),
    )
    return Invitation(**dict(row)) if row else None


@dataclass(frozen=True)
class Decision:
    """How the worker decided one accept command."""

    mine: bool  # decided by this command (else another command got there first)
    decision: str | None  # 'accepted' / 'email_taken' / None when not decided by a command
    user_id: uuid.UUID | None


async def decision_for(
    pool: asyncpg.Pool, invitation_id: uuid.UUID, command_id: uuid.UUID
) -> Decision | None:
    """None while the invitation is still pending; else how (and by whom) it was decided."""
    row = await pool.fetchrow(
        "SELECT status, decided_by, decision, user_id FROM invitations WHERE id = $1",
        invitation_id,
    )
    if row is None:
        return Decision(mine=False, decision=None, user_id=None)
    if row["decided_by"] == command_id:
        # decision None: the invitation had expired when this command reached the worker.
        return Decision(mine=True, decision=row["decision"], user_id=row["user_id"])
    if row["status"] == "pending":
        return None
    return Decision(mine=False, decision=row["decision"], user_id=row["user_id"])
