"""Sealed passwords: only the holder of the private key can open them (SPEC §6)."""

from __future__ import annotations

import base64

import pytest

from service.sealing import UnsealError, derive_secret, generate_key_pair, seal, unseal

PUBLIC, PRIVATE = generate_key_pair()


def test_generated_keys_are_32_byte_base64() -> None:
    assert len(base64.b64decode(PUBLIC)) == 32
    assert len(base64.b64decode(PRIVATE)) == 32
    assert PUBLIC != PRIVATE


@pytest.mark.parametrize("plaintext", ["correct horse battery", "ünïcødé 🔑 pass", " " * 3])
def test_seal_then_unseal_returns_the_plaintext(plaintext: str) -> None:
    assert unseal(seal(plaintext, PUBLIC), PRIVATE) == plaintext


def test_sealed_output_does_not_contain_the_plaintext() -> None:
    plaintext = "correct horse battery"
    sealed = seal(plaintext, PUBLIC)
    assert plaintext not in sealed
    assert plaintext.encode() not in base64.b64decode(sealed)


def test_sealing_twice_gives_different_ciphertexts() -> None:
    assert seal("same", PUBLIC) != seal("same", PUBLIC)


def test_unseal_with_another_private_key_raises_unseal_error() -> None:
    _, other_private = generate_key_pair()
    with pytest.raises(UnsealError):
        unseal(seal("secret", PUBLIC), other_private)


def test_unseal_of_tampered_ciphertext_raises_unseal_error() -> None:
    raw = bytearray(base64.b64decode(seal("secret", PUBLIC)))
    raw[-1] ^= 0x01
    with pytest.raises(UnsealError):
        unseal(base64.b64encode(bytes(raw)).decode(), PRIVATE)


@pytest.mark.parametrize("garbage", ["", "not base64 !!", "AAAA"])
def test_unseal_of_garbage_raises_unseal_error(garbage: str) -> None:
    with pytest.raises(UnsealError):
        unseal(garbage, PRIVATE)


def test_unseal_error_is_a_value_error() -> None:
    assert issubclass(UnsealError, ValueError)


def test_derive_secret_is_deterministic_per_purpose() -> None:
    assert derive_secret(PRIVATE, "activation") == derive_secret(PRIVATE, "activation")
    assert len(derive_secret(PRIVATE, "activation")) == 32


def test_derive_secret_differs_across_purposes_and_keys() -> None:
    _, other_private = generate_key_pair()
    secrets = {
        derive_secret(PRIVATE, "activation"),
        derive_secret(PRIVATE, "invitation"),
        derive_secret(other_private, "activation"),
    }
    assert len(secrets) == 3


def test_derived_secret_is_not_the_private_key_itself() -> None:
    assert derive_secret(PRIVATE, "activation") != base64.b64decode(PRIVATE)
