"""Idempotency-Key support shared by the POST endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json

from service.tenants import Tenant


def fingerprint(tenant: Tenant, body: dict[str, object]) -> bytes:
    """Identifies a body for Idempotency-Key checks. Keyed with the tenant secret, so the
    stored value cannot be used to test password guesses without that secret."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(tenant.secret, canonical, hashlib.sha256).digest()


def same_body(stored: bytes, presented: bytes) -> bool:
    return hmac.compare_digest(stored, presented)
