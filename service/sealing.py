"""Passwords travel sealed: libsodium sealed boxes (PyNaCl). Only workers can open them."""

from __future__ import annotations

import hashlib
import hmac

from nacl.encoding import Base64Encoder
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox


class UnsealError(ValueError):
    """The ciphertext was not sealed for this key, or was tampered with."""


def generate_key_pair() -> tuple[str, str]:
    """A new (public, private) key pair, both base64."""
    private = PrivateKey.generate()
    return (
        private.public_key.encode(Base64Encoder).decode(),
        private.encode(Base64Encoder).decode(),
    )


def seal(plaintext: str, public_key: str) -> str:
    """Encrypt for the holder of the private key; base64 output."""
    box = SealedBox(PublicKey(public_key.encode(), Base64Encoder))
    return box.encrypt(plaintext.encode(), Base64Encoder).decode()


def unseal(sealed: str, private_key: str) -> str:
    """Decrypt what `seal` produced."""
    box = SealedBox(PrivateKey(private_key.encode(), Base64Encoder))
    try:
        return box.decrypt(sealed.encode(), Base64Encoder).decode()
    except (CryptoError, ValueError) as exc:
        raise UnsealError("cannot unseal") from exc


def derive_secret(private_key: str, purpose: str) -> bytes:
    """A worker-only secret for one purpose, derived from the sealing private key, so
    workers need no second secret to share (e.g. to re-derive activation tokens)."""
    raw = PrivateKey(private_key.encode(), Base64Encoder).encode()
    return hmac.new(raw, f"registrar/{purpose}".encode(), hashlib.sha256).digest()
