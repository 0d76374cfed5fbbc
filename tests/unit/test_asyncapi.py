"""schemas/asyncapi.json describes exactly the public events the code publishes, and no
internal command."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.asyncapi import build_asyncapi, render
from schemas.events import COMMANDS, EVENTS, PUBLIC_EVENTS

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"


def test_the_committed_document_is_up_to_date():
    assert COMMITTED.read_text() == render(), (
        "schemas/asyncapi.json is stale: run `python -m schemas.asyncapi > schemas/asyncapi.json`"
    )


def test_every_event_has_a_channel_message_and_payload_schema():
    document = build_asyncapi()
    assert document["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == set(PUBLIC_EVENTS)
    for routing_key in PUBLIC_EVENTS:
        event_type, model = EVENTS[routing_key]
        message = document["components"]["messages"][model.__name__]
        assert message["payload"]["properties"]["type"] == {"const": event_type}
        data_schema = document["components"]["schemas"][model.__name__]
        wire_names = {field.alias or name for name, field in model.model_fields.items()}
        assert set(data_schema["properties"]) == wire_names, routing_key


def test_internal_references_resolve():
    document = build_asyncapi()
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = document
        for key in ref.split("/"):
            node = node[key]


def test_commands_are_not_documented():
    document = build_asyncapi()
    text = json.dumps(document)
    assert {
        "register.requested",
        "invite.requested",
        "activation.requested",
        "activation.resend.requested",
        "invitation.accept.requested",
        "email.requested",
        "password.recovery.requested",
        "password.reset.requested",
        "password.change.requested",
        "account.delete.requested",
    } == COMMANDS
    for routing_key in COMMANDS:
        event_type, model = EVENTS[routing_key]
        assert event_type not in text
        assert model.__name__ not in document["components"]["messages"]
    assert {
        "user.registered",
        "user.activated",
        "registration.rejected",
        "invitation.sent",
        "invitation.accepted",
        "email.delivered",
        "email.failed",
        "user.password_changed",
        "user.locked",
        "user.deleted",
        "user.updated",
        "user.unlocked",
    } == PUBLIC_EVENTS
