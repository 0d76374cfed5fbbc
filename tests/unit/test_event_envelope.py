"""Event contracts: CloudEvents envelope and typed payloads round-trip (SPEC §5)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from schemas.events import (
    EVENTS,
    AccountDeleteRequested,
    ActivationRequested,
    ActivationResendRequested,
    CloudEvent,
    EmailDelivered,
    EmailFailed,
    EmailRequested,
    EventData,
    InvitationAccepted,
    InvitationAcceptRequested,
    InvitationSent,
    InviteRequested,
    PasswordChangeRequested,
    PasswordRecoveryRequested,
    PasswordResetRequested,
    RegisterRequested,
    RegistrationRejected,
    UserActivated,
    UserDeleted,
    UserLocked,
    UserPasswordChanged,
    UserRegistered,
    UserUnlocked,
    UserUpdated,
    envelope,
    parse,
    routing_key_of,
)

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

SAMPLES: dict[str, EventData] = {
    "register.requested": RegisterRequested(
        request_id=uuid.uuid4(),
        tenant_id=TENANT,
        email="alice@example.com",
        user_name="alice",
        locale="de",
        activation_url="https://app.example.com/a/{activationToken}",
        sealed_password="c2VhbGVk",
    ),
    "activation.requested": ActivationRequested(token_id=uuid.uuid4(), tenant_id=TENANT),
    "activation.resend.requested": ActivationResendRequested(
        tenant_id=TENANT, email="alice@example.com"
    ),
    "invite.requested": InviteRequested(
        request_id=uuid.uuid4(),
        tenant_id=TENANT,
        email="bob@example.com",
        locale="de_AT",
        name="Bob",
        role_id=uuid.uuid4(),
    ),
    "invitation.accept.requested": InvitationAcceptRequested(
        invitation_id=uuid.uuid4(), tenant_id=TENANT, name="Bob", sealed_password="c2VhbGVk"
    ),
    "invitation.sent": InvitationSent(
        invitation_id=uuid.uuid4(),
        tenant_id=TENANT,
        email="bob@example.com",
        locale="de_AT",
        expires_at=WHEN,
    ),
    "invitation.accepted": InvitationAccepted(
        invitation_id=uuid.uuid4(), tenant_id=TENANT, user_id=uuid.uuid4()
    ),
    "user.registered": UserRegistered(
        user_id=uuid.uuid4(),
        tenant_id=TENANT,
        email="alice@example.com",
        user_name="alice",
        name="Alice",
        locale="en",
        is_approved=False,
        roles=["User"],
        source="self",
        registered_at=WHEN,
        request_id=uuid.uuid4(),
    ),
    "user.activated": UserActivated(user_id=uuid.uuid4(), tenant_id=TENANT, activated_at=WHEN),
    "registration.rejected": RegistrationRejected(
        request_id=uuid.uuid4(), tenant_id=TENANT, reason="email_taken"
    ),
    "email.requested": EmailRequested(email_id=uuid.uuid4(), tenant_id=TENANT),
    "email.delivered": EmailDelivered(
        email_id=uuid.uuid4(), tenant_id=TENANT, kind="activation", to="a@example.com", attempts=1
    ),
    "email.failed": EmailFailed(
        email_id=uuid.uuid4(),
        tenant_id=TENANT,
        kind="activation",
        to="a@example.com",
        attempts=5,
        error="550 mailbox unavailable",
    ),
    "password.recovery.requested": PasswordRecoveryRequested(
        tenant_id=TENANT,
        login="alice",
        recover_url="https://app.example.com/r/{passwordRecoveryToken}",
    ),
    "password.reset.requested": PasswordResetRequested(
        token_id=uuid.uuid4(), tenant_id=TENANT, sealed_password="c2VhbGVk"
    ),
    "password.change.requested": PasswordChangeRequested(
        user_id=uuid.uuid4(), tenant_id=TENANT, sealed_password="c2VhbGVk"
    ),
    "account.delete.requested": AccountDeleteRequested(user_id=uuid.uuid4(), tenant_id=TENANT),
    "user.password_changed": UserPasswordChanged(
        user_id=uuid.uuid4(), tenant_id=TENANT, at=WHEN, via="recovery"
    ),
    "user.locked": UserLocked(
        user_id=uuid.uuid4(), tenant_id=TENANT, at=WHEN, locked_until=WHEN, reason="failed_logins"
    ),
    "user.deleted": UserDeleted(user_id=uuid.uuid4(), tenant_id=TENANT, at=WHEN, by="self"),
    "user.updated": UserUpdated(
        user_id=uuid.uuid4(), tenant_id=TENANT, at=WHEN, changed=["email", "roles"]
    ),
    "user.unlocked": UserUnlocked(user_id=uuid.uuid4(), tenant_id=TENANT, at=WHEN),
}


def wire(event: CloudEvent) -> bytes:
    return event.model_dump_json().encode()


def test_every_routing_key_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENTS)


@pytest.mark.parametrize("routing_key", sorted(EVENTS))
def test_envelope_then_parse_returns_equal_payload(routing_key: str) -> None:
    data = SAMPLES[routing_key]
    event = envelope(data, subject="subj")
    parsed_event, parsed_data = parse(routing_key, wire(event))
    assert type(parsed_data) is type(data)
    assert parsed_data == data
    assert parsed_event == event


@pytest.mark.parametrize("routing_key", sorted(EVENTS))
def test_envelope_type_and_routing_key_come_from_the_events_table(routing_key: str) -> None:
    data = SAMPLES[routing_key]
    event = envelope(data)
    assert routing_key_of(data) == routing_key
    assert event.type == EVENTS[routing_key][0]
    assert event.specversion == "1.0"
    assert event.source == "urn:registrar"
    assert event.datacontenttype == "application/json"


@pytest.mark.parametrize("routing_key", sorted(EVENTS))
def test_data_keys_are_camel_case_on_the_wire(routing_key: str) -> None:
    data = json.loads(wire(envelope(SAMPLES[routing_key])))["data"]
    assert data
    for key in data:
        assert "_" not in key, key
        assert key[0].islower(), key


def test_register_requested_data_has_the_spec_field_names() -> None:
    data = envelope(SAMPLES["register.requested"]).data
    assert set(data) == {
        "requestId",
        "tenantId",
        "email",
        "userName",
        "locale",
        "activationUrl",
        "sealedPassword",
    }


def test_invite_requested_data_has_the_spec_field_names() -> None:
    data = envelope(SAMPLES["invite.requested"]).data
    assert set(data) == {"requestId", "tenantId", "email", "locale", "name", "roleId"}


def test_invite_requested_name_and_role_are_optional() -> None:
    data = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=TENANT, email="bob@example.com", locale="en"
    )
    _, parsed = parse("invite.requested", wire(envelope(data)))
    assert (parsed.name, parsed.role_id) == (None, None)


def test_invitation_sent_and_accepted_data_have_the_spec_field_names() -> None:
    sent = envelope(SAMPLES["invitation.sent"]).data
    accepted = envelope(SAMPLES["invitation.accepted"]).data
    assert set(sent) == {"invitationId", "tenantId", "email", "locale", "expiresAt"}
    assert set(accepted) == {"invitationId", "tenantId", "userId"}


def test_an_email_request_carries_only_ids_and_ignores_forged_content() -> None:
    """SPEC §5: recipient, kind and content come from the mailer's own row; whatever else
    a (forged) command carries is not even read."""
    data = EmailRequested(email_id=uuid.uuid4(), tenant_id=TENANT)
    assert set(envelope(data).data) == {"emailId", "tenantId"}
    forged = envelope(data).model_copy(
        update={"data": {**envelope(data).data, "to": "mallory@evil.example", "kind": "welcome"}}
    )
    _, parsed = parse("email.requested", wire(forged))
    assert parsed == data
    assert not hasattr(parsed, "to") and not hasattr(parsed, "kind")


def test_each_envelope_gets_a_fresh_id_and_an_aware_time() -> None:
    first = envelope(SAMPLES["user.activated"])
    second = envelope(SAMPLES["user.activated"])
    assert first.id != second.id
    assert first.time.tzinfo is not None


def test_parse_rejects_a_type_that_does_not_match_the_routing_key() -> None:
    body = wire(envelope(SAMPLES["user.activated"]))
    with pytest.raises(ValueError, match="does not match routing key"):
        parse("user.registered", body)


def test_parse_rejects_an_unknown_routing_key() -> None:
    body = wire(envelope(SAMPLES["user.activated"]))
    with pytest.raises(ValueError, match="unknown routing key"):
        parse("user.vanished", body)


def test_parse_tolerates_unknown_fields_in_data_and_envelope() -> None:
    message = json.loads(wire(envelope(SAMPLES["user.activated"])))
    message["data"]["futureField"] = {"nested": True}
    message["traceparent"] = "00-abc-def-01"
    _, data = parse("user.activated", json.dumps(message).encode())
    assert data == SAMPLES["user.activated"]


def test_parse_rejects_data_missing_a_required_field() -> None:
    message = json.loads(wire(envelope(SAMPLES["user.activated"])))
    del message["data"]["userId"]
    with pytest.raises(ValueError):
        parse("user.activated", json.dumps(message).encode())


def test_parse_rejects_a_body_that_is_not_json() -> None:
    with pytest.raises(ValueError):
        parse("user.activated", b"not json")


def test_email_failed_is_published_under_its_own_routing_key_not_its_parents() -> None:
    assert routing_key_of(SAMPLES["email.failed"]) == "email.failed"
    assert routing_key_of(SAMPLES["email.delivered"]) == "email.delivered"


def test_payloads_are_frozen() -> None:
    data = SAMPLES["user.activated"]
    with pytest.raises(ValueError):
        data.user_id = uuid.uuid4()  # type: ignore[misc]
