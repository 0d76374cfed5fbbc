"""Standard Webhooks signatures (service/webhooks.py), checked with the `standardwebhooks`
package — the reference implementation, not ours — and the event filters."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service import webhooks

BODY = json.dumps({"id": "0190a1b2-0000-7000-8000-000000000001", "data": {"é": 1}}).encode()


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhooks.new_secret() != secret
    assert webhooks.secret_key(secret) == base64.b64decode(secret[6:])


def test_signed_headers_verify_with_the_standardwebhooks_package() -> None:
    secret = webhooks.new_secret()
    headers = webhooks.signed_headers(webhooks.secret_key(secret), "msg_1", BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_the_signature_is_the_reference_implementations() -> None:
    secret = webhooks.new_secret()
    ours = webhooks.sign(webhooks.secret_key(secret), "msg_2", 1_700_000_000, BODY)
    import datetime as dt

    reference = Webhook(secret).sign(
        "msg_2", dt.datetime.fromtimestamp(1_700_000_000, dt.UTC), BODY
    )
    assert ours == reference


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # body changed
        lambda h, b: ({**h, "webhook-id": "other"}, b),  # id changed
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) - 600)}, b),  # too old
    ],
)
def test_a_tampered_or_stale_request_does_not_verify(tamper) -> None:
    secret = webhooks.new_secret()
    headers, body = tamper(webhooks.signed_headers(webhooks.secret_key(secret), "m", BODY), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_another_secret_does_not_verify() -> None:
    headers = webhooks.signed_headers(webhooks.secret_key(webhooks.new_secret()), "m", BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(BODY, headers)


def test_event_filters_take_routing_keys_or_cloudevents_types() -> None:
    assert webhooks.event_filter(None) is None
    assert webhooks.event_filter([]) is None
    assert webhooks.event_filter(
        ["user.registered", "registrar.user.activated.v1", "user.registered"]
    ) == ("user.registered", "user.activated")
    for wrong in ("register.requested", "registrar.email.requested.v1", "user.nope", "*"):
        with pytest.raises(webhooks.WebhookError, match="not a public event"):
            webhooks.event_filter([wrong])
