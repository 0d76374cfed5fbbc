"""An Idempotency-Key fingerprint identifies a body, but a database dump holding it (and
the tenant secret that keys it) must not let anyone test password guesses."""

from __future__ import annotations

import uuid

from service.gateway.idempotency import fingerprint
from service.tenants import Tenant

BODY = {
    "email": "ann@example.com",
    "userName": "ann",
    "activationUrl": "https://app.example.com/a/{activationToken}",
    "challengeIdentifier": "-",
    "challengeResponse": "-",
}


def tenant() -> Tenant:
    return Tenant(
        id=uuid.uuid4(),
        name="t",
        registration_enabled=True,
        captcha="none",
        activation_url_prefixes=("https://app.example.com/",),
        duplicates="conflict",
        default_locale="en",
        secret=b"s" * 32,
    )


def test_the_fingerprint_does_not_depend_on_the_password() -> None:
    owner = tenant()
    real = fingerprint(owner, {**BODY, "password": "correct horse", "confirmPassword": "x"})
    guess = fingerprint(owner, {**BODY, "password": "guess 123456", "confirmPassword": "y"})
    without = fingerprint(owner, BODY)
    assert real == guess == without  # nothing in it to test a guess against


def test_every_other_field_still_tells_bodies_apart() -> None:
    owner = tenant()
    assert fingerprint(owner, BODY) != fingerprint(owner, {**BODY, "userName": "bob"})
    assert fingerprint(owner, BODY) != fingerprint(owner, {**BODY, "email": "b@example.com"})
