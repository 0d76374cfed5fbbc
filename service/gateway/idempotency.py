"""Idempotency-Key support shared by the POST endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json

from service.tenants import Tenant

# Never part of a stored fingerprint: the tenant secret that keys it lives in the same
# database, so a fingerprint over a password would let anyone holding a dump test
# password guesses at HMAC speed, bypassing argon2id.
SECRET_FIELDS = frozenset({"password", "confirmPassword", "newPassword", "oldPassword"})


def fingerprint(tenant: Tenant, body: dict[str, object]) -> bytes:
    """Identifies a body for Idempotency-Key checks, password fields left out: a retry
    that differs only in its password counts as the same request (the first one's
    password stands)."""
    kept = {key: value for key, value in body.items() if key not in SECRET_FIELDS}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(tenant.secret, canonical, hashlib.sha256).digest()
