"""Passwords travel sealed: libsodium sealed boxes (PyNaCl). Only workers can open them.

A sealed value is `KEYID.CIPHERTEXT`: the key id (a short hash of the public key it was
sealed to) lets workers pick the right private key among several, so keys rotate while
messages sealed to the old key are still queued (SPEC §6). REGISTRAR_SEAL_PRIVATE_KEY may
list several keys, comma-separated, newest first. Values of the older format (no key id)
still open: every listed key is tried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from nacl.encoding import Base64Encoder
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

KEY_ID_SEPARATOR = "."  # never part of standard base64


class UnsealError(ValueError):
    """The ciphertext was not sealed for any listed key, or was tampered with."""


def generate_key_pair() -> tuple[str, str]:
    """A new (public, private) key pair, both base64."""
    private = PrivateKey.generate()
    return (
        private.public_key.encode(Base64Encoder).decode(),
        private.encode(Base64Encoder).decode(),
    )


def _key_id(public: PublicKey) -> str:
    """A short, stable name of a public key (not secret: it is a hash of a public value)."""
    digest = hashlib.sha256(b"registrar/seal-key-id\0" + bytes(public)).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode()


def key_id(public_key: str) -> str:
    """The key id of a base64 public key, as it prefixes what is sealed to it."""
    return _key_id(PublicKey(public_key.encode(), Base64Encoder))


def private_keys(private_key: str | Sequence[str]) -> list[PrivateKey]:
    """The private keys of a REGISTRAR_SEAL_PRIVATE_KEY value (comma-separated, newest
    first), or of a list of them. ValueError when one is not a base64 32-byte key."""
    items = private_key.split(",") if isinstance(private_key, str) else list(private_key)
    keys = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            keys.append(PrivateKey(item.encode(), Base64Encoder))
        except (ValueError, TypeError, CryptoError) as exc:
            raise ValueError("a sealing private key is not a base64 32-byte key") from exc
    if not keys:
        raise ValueError("no sealing private key")
    return keys


def seal(plaintext: str, public_key: str) -> str:
    """Encrypt for the holder of the private key: `KEYID.base64`."""
    public = PublicKey(public_key.encode(), Base64Encoder)
    sealed = SealedBox(public).encrypt(plaintext.encode(), Base64Encoder).decode()
    return f"{_key_id(public)}{KEY_ID_SEPARATOR}{sealed}"


def _open(box_key: PrivateKey, ciphertext: str) -> str:
    return SealedBox(box_key).decrypt(ciphertext.encode(), Base64Encoder).decode()


def unseal(sealed: str, private_key: str | Sequence[str]) -> str:
    """Decrypt what `seal` produced, with the listed key it was sealed to.

    `private_key` is one key or several (comma-separated string or a list). A value with
    a key id opens only with that key; a value without one (older format) with any.
    """
    try:
        keys = private_keys(private_key)
    except ValueError as exc:
        raise UnsealError("no usable private key") from exc
    kid, separator, ciphertext = sealed.rpartition(KEY_ID_SEPARATOR)
    if separator:
        candidates = [k for k in keys if _key_id(k.public_key) == kid]
        if not candidates:
            raise UnsealError("sealed to a key that is not listed")
    else:
        candidates, ciphertext = keys, sealed
    for candidate in candidates:
        try:
            return _open(candidate, ciphertext)
        except (CryptoError, ValueError, TypeError):
            continue
    raise UnsealError("cannot unseal")


def derive_secret(private_key: str | Sequence[str], purpose: str) -> bytes:
    """A worker-only secret for one purpose, derived from the sealing private key, so
    workers need no second secret to share (e.g. to re-derive activation tokens).

    With several keys listed it is derived from the oldest (the last): adding a new key
    in front leaves tokens of queued emails valid; it changes only when that oldest key
    is finally removed (by then the queues it sealed are drained)."""
    raw = private_keys(private_key)[-1].encode()
    return hmac.new(raw, f"registrar/{purpose}".encode(), hashlib.sha256).digest()
