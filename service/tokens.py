"""High-entropy opaque secrets (API keys, bearer and activation tokens).

Only SHA-256 hashes are stored; lookups go by hash and comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret with `nbytes` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 digest stored in place of the secret."""
    return hashlib.sha256(secret.encode()).digest()


def matches(secret: str, stored_hash: bytes) -> bool:
    """Constant-time check of a presented secret against a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def derive_token(key: bytes, token_id: uuid.UUID) -> str:
    """The token for a row id under a worker secret: HMAC-SHA256, URL-safe base64.

    Lets the registration worker and the mailer agree on an activation token without it
    ever being written to a table or a message.
    """
    digest = hmac.new(key, token_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
