"""Opaque secrets: random, stored as SHA-256, compared in constant time (SPEC §6)."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

from service.tokens import derive_token, hash_secret, matches, new_secret

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def test_new_secret_is_url_safe_and_carries_32_bytes_by_default() -> None:
    secret = new_secret()
    assert URL_SAFE.fullmatch(secret)
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 32


def test_new_secret_length_follows_requested_entropy() -> None:
    assert len(new_secret(16)) < len(new_secret(32)) < len(new_secret(64))


def test_new_secrets_are_unique() -> None:
    assert len({new_secret() for _ in range(1000)}) == 1000


def test_hash_secret_is_the_sha256_digest() -> None:
    assert hash_secret("abc") == hashlib.sha256(b"abc").digest()
    assert len(hash_secret(new_secret())) == 32


def test_matches_accepts_the_right_secret_and_rejects_others() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert matches(secret, stored)
    assert not matches(secret + "x", stored)
    assert not matches(new_secret(), stored)
    assert not matches(secret, b"")


def test_derive_token_is_deterministic_for_key_and_id() -> None:
    token_id = uuid.uuid4()
    assert derive_token(b"k" * 32, token_id) == derive_token(b"k" * 32, token_id)


def test_derive_token_depends_on_key_and_id() -> None:
    token_id = uuid.uuid4()
    tokens = {
        derive_token(b"k" * 32, token_id),
        derive_token(b"K" * 32, token_id),
        derive_token(b"k" * 32, uuid.uuid4()),
    }
    assert len(tokens) == 3


def test_derived_token_is_unpadded_url_safe_256_bits() -> None:
    token = derive_token(b"key", uuid.uuid4())
    assert URL_SAFE.fullmatch(token)
    assert len(token) == 43
