"""Message contracts: routing keys, CloudEvents types and the `data` of each message.

Two kinds (SPEC §5): a *command* (a payload class derived from `Command`) asks one of
registrar's own workers to act and travels on the internal `{prefix}.commands` exchange;
an *event* (any other payload) is a public fact on `{prefix}.events`. The payload class
is the one place that says which is which: the publisher picks the exchange from it, the
topology binds work queues to commands only, and the AsyncAPI document lists events only.

Consumed messages ignore unknown fields (readers tolerate new fields); every model is
frozen so a handler cannot mutate the message it was given.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from schemas.ids import uuid7

SOURCE = "urn:registrar"
CONTENT_TYPE = "application/cloudevents+json"


class EventData(BaseModel):
    """Base of every event payload: camelCase on the wire, frozen, tolerant reader."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class Command(EventData):
    """Base of every command payload: internal, on `{prefix}.commands` only, so that
    nothing published on the public exchange can make a worker act."""


class RegisterRequested(Command):
    request_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    user_name: str
    locale: str
    # None for a user an administrator creates without mailing an activation link.
    activation_url: str | None = None
    sealed_password: str


class ActivationResendRequested(Command):
    """Command from the gateway: mail a fresh activation link to this address, if it
    belongs to a user still waiting for activation (the caller always gets 204)."""

    tenant_id: uuid.UUID
    email: str


class ActivationRequested(Command):
    """Command from the gateway: consume this activation token (identified by its row id)."""

    token_id: uuid.UUID
    tenant_id: uuid.UUID


class InviteRequested(Command):
    request_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    locale: str
    name: str | None = None
    role_id: uuid.UUID | None = None


class InvitationAcceptRequested(Command):
    """Command from the gateway: the invitee submitted their data for this invitation."""

    invitation_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    sealed_password: str


class PasswordRecoveryRequested(Command):
    """Command from the gateway: mail a recovery link to the user with this userName or
    email, if there is one (the caller always gets 201)."""

    tenant_id: uuid.UUID
    login: str
    recover_url: str


class PasswordResetRequested(Command):
    """Command from the gateway: set this password for the owner of this recovery token
    (identified by its row id), consuming it."""

    token_id: uuid.UUID
    tenant_id: uuid.UUID
    sealed_password: str


class PasswordChangeRequested(Command):
    """Command from the gateway: set this password for this user (the gateway checked the
    caller's right to, and the old password where one was needed)."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    sealed_password: str
    send_mail_notification: bool = True
    # The user themself (with the old password) or an administrator (a tenant token).
    by: Literal["self", "admin"] = "self"


class AccountDeleteRequested(Command):
    """Command from the gateway: erase this account (the gateway checked its password)."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID


class InvitationSent(EventData):
    invitation_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    locale: str
    expires_at: datetime


class InvitationAccepted(EventData):
    invitation_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID


class UserRegistered(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    user_name: str
    name: str
    locale: str
    is_approved: bool
    roles: list[str]
    source: Literal["self", "invitation", "admin"]
    registered_at: datetime
    request_id: uuid.UUID | None = None


class UserActivated(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    activated_at: datetime


class RegistrationRejected(EventData):
    request_id: uuid.UUID
    tenant_id: uuid.UUID
    reason: Literal["email_taken", "username_taken", "captcha_replayed", "invalid_request"]


class UserPasswordChanged(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    at: datetime
    # `recovery` (a reset link), `self` (the user, with the old password) or `admin`.
    via: Literal["recovery", "self", "admin"]


class UserLocked(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    at: datetime
    # Until when (a lock-out after failed logins); None: until an administrator unlocks.
    locked_until: datetime | None = None
    reason: Literal["failed_logins", "admin"]


class UserUpdated(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    at: datetime
    # The names (camelCase, as in the user representation) of the fields that changed:
    # userName, email, name, roles, isApproved. Never their old values or any secret.
    changed: list[str]


class UserUnlocked(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    at: datetime


class UserDeleted(EventData):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    at: datetime
    # `self` (the user deleted their account) or `admin`.
    by: Literal["self", "admin"]


class EmailRequested(Command):
    """Command to the mailer: send this email. Only ids: the mailer reads recipient, kind
    and content from its own `emails` row, written by the producing worker in the same
    transaction, so a forged or replayed command can at most re-send a legitimate email
    to its legitimate recipient (and a sent one is not sent again). No secret either: a
    token is re-derived by the mailer from a row id under the workers' secret (SPEC §5)."""

    email_id: uuid.UUID
    tenant_id: uuid.UUID


class EmailDelivered(EventData):
    email_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    to: str
    attempts: int


class EmailFailed(EmailDelivered):
    error: str


# routing key -> (CloudEvents type, data model). The one table both sides read.
EVENTS: dict[str, tuple[str, type[EventData]]] = {
    "register.requested": ("registrar.register.requested.v1", RegisterRequested),
    "activation.requested": ("registrar.activation.requested.v1", ActivationRequested),
    "activation.resend.requested": (
        "registrar.activation.resend.requested.v1",
        ActivationResendRequested,
    ),
    "invite.requested": ("registrar.invite.requested.v1", InviteRequested),
    "invitation.accept.requested": (
        "registrar.invitation.accept.requested.v1",
        InvitationAcceptRequested,
    ),
    "invitation.sent": ("registrar.invitation.sent.v1", InvitationSent),
    "invitation.accepted": ("registrar.invitation.accepted.v1", InvitationAccepted),
    "user.registered": ("registrar.user.registered.v1", UserRegistered),
    "user.activated": ("registrar.user.activated.v1", UserActivated),
    "registration.rejected": ("registrar.registration.rejected.v1", RegistrationRejected),
    "password.recovery.requested": (
        "registrar.password.recovery.requested.v1",
        PasswordRecoveryRequested,
    ),
    "password.reset.requested": ("registrar.password.reset.requested.v1", PasswordResetRequested),
    "password.change.requested": (
        "registrar.password.change.requested.v1",
        PasswordChangeRequested,
    ),
    "account.delete.requested": ("registrar.account.delete.requested.v1", AccountDeleteRequested),
    "user.password_changed": ("registrar.user.password_changed.v1", UserPasswordChanged),
    "user.locked": ("registrar.user.locked.v1", UserLocked),
    "user.updated": ("registrar.user.updated.v1", UserUpdated),
    "user.unlocked": ("registrar.user.unlocked.v1", UserUnlocked),
    "user.deleted": ("registrar.user.deleted.v1", UserDeleted),
    "email.requested": ("registrar.email.requested.v1", EmailRequested),
    "email.delivered": ("registrar.email.delivered.v1", EmailDelivered),
    "email.failed": ("registrar.email.failed.v1", EmailFailed),
}
ROUTING_KEY_BY_MODEL: dict[type[EventData], str] = {m: rk for rk, (_, m) in EVENTS.items()}


def is_command(routing_key: str) -> bool:
    """True for an internal command (`{prefix}.commands`), False for a public event or a
    key this version does not know (`{prefix}.events`, where no worker listens)."""
    entry = EVENTS.get(routing_key)
    return entry is not None and issubclass(entry[1], Command)


COMMANDS = frozenset(key for key in EVENTS if is_command(key))
PUBLIC_EVENTS = frozenset(EVENTS) - COMMANDS


class CloudEvent(BaseModel):
    """CloudEvents 1.0 structured-mode envelope."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid7)
    source: str = SOURCE
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


def routing_key_of(data: EventData) -> str:
    """The routing key an event payload is published under."""
    return ROUTING_KEY_BY_MODEL[type(data)]


def envelope(data: EventData, *, subject: str | None = None) -> CloudEvent:
    """Wrap an event payload in a new CloudEvent with the type its routing key names."""
    event_type, _ = EVENTS[routing_key_of(data)]
    return CloudEvent(
        type=event_type, subject=subject, data=data.model_dump(mode="json", by_alias=True)
    )


def parse(routing_key: str, body: bytes) -> tuple[CloudEvent, EventData]:
    """Parse a consumed message into its envelope and typed payload (raises ValueError)."""
    if routing_key not in EVENTS:
        raise ValueError(f"unknown routing key {routing_key!r}")
    event = CloudEvent.model_validate_json(body)
    expected_type, model = EVENTS[routing_key]
    if event.type != expected_type:
        raise ValueError(f"type {event.type!r} does not match routing key {routing_key!r}")
    return event, model.model_validate(event.data)
