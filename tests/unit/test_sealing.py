"""Sealed passwords: only the holder of the private key can open them (SPEC §6)."""

from __future__ import annotations

import base64

import pytest

from service.sealing import (
    UnsealError,
    derive_secret,
    generate_key_pair,
    key_id,
    seal,
    unseal,
)

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
    assert plaintext.encode() not in base64.b64decode(sealed.split(".")[1])


def test_sealing_twice_gives_different_ciphertexts() -> None:
    assert seal("same", PUBLIC) != seal("same", PUBLIC)


def test_unseal_with_another_private_key_raises_unseal_error() -> None:
    _, other_private = generate_key_pair()
    with pytest.raises(UnsealError):
        unseal(seal("secret", PUBLIC), other_private)


def test_unseal_of_tampered_ciphertext_raises_unseal_error() -> None:
    kid, ciphertext = seal("secret", PUBLIC).split(".")
    raw = bytearray(base64.b64decode(ciphertext))
    raw[-1] ^= 0x01
    with pytest.raises(UnsealError):
        unseal(f"{kid}.{base64.b64encode(bytes(raw)).decode()}", PRIVATE)


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


# --- key ids and rotation (SPEC §6) ----------------------------------------------------

NEW_PUBLIC, NEW_PRIVATE = generate_key_pair()


def legacy_seal(plaintext: str, public_key: str) -> str:
    """The format before key ids: bare base64 of the sealed box."""
    from nacl.encoding import Base64Encoder
    from nacl.public import PublicKey, SealedBox

    box = SealedBox(PublicKey(public_key.encode(), Base64Encoder))
    return box.encrypt(plaintext.encode(), Base64Encoder).decode()


def test_a_sealed_value_starts_with_the_key_id_of_its_public_key() -> None:
    sealed = seal("secret", PUBLIC)
    assert sealed.startswith(key_id(PUBLIC) + ".")
    assert key_id(PUBLIC) != key_id(NEW_PUBLIC)
    assert PUBLIC not in sealed and PRIVATE not in sealed


def test_after_rotation_values_sealed_to_the_old_and_the_new_key_both_open() -> None:
    before = seal("sealed before rotation", PUBLIC)  # still queued when keys rotate
    rotated = f"{NEW_PRIVATE},{PRIVATE}"  # newest first
    after = seal("sealed after rotation", NEW_PUBLIC)
    assert unseal(before, rotated) == "sealed before rotation"
    assert unseal(after, rotated) == "sealed after rotation"
    assert unseal(after, [NEW_PRIVATE, PRIVATE]) == "sealed after rotation"
    assert unseal(after, f" {NEW_PRIVATE} , {PRIVATE} ,") == "sealed after rotation"


def test_values_without_a_key_id_still_open_with_any_listed_key() -> None:
    old = legacy_seal("from before key ids", PUBLIC)
    assert "." not in old
    assert unseal(old, PRIVATE) == "from before key ids"
    assert unseal(old, f"{NEW_PRIVATE},{PRIVATE}") == "from before key ids"
    with pytest.raises(UnsealError):
        unseal(old, NEW_PRIVATE)


def test_a_value_sealed_to_an_unlisted_key_fails_cleanly() -> None:
    other_public, _ = generate_key_pair()
    with pytest.raises(UnsealError, match="not listed"):
        unseal(seal("secret", other_public), f"{NEW_PRIVATE},{PRIVATE}")
    with pytest.raises(UnsealError):  # the old key dropped after its queues drained
        unseal(seal("secret", PUBLIC), NEW_PRIVATE)


def test_a_forged_key_id_does_not_open_a_value_of_another_key() -> None:
    sealed = seal("secret", PUBLIC)
    forged = key_id(NEW_PUBLIC) + sealed[sealed.index(".") :]
    with pytest.raises(UnsealError):
        unseal(forged, f"{NEW_PRIVATE},{PRIVATE}")


@pytest.mark.parametrize("keys", ["", " , ", "not a key", f"{PRIVATE},short"])
def test_a_bad_private_key_list_is_an_unseal_error_not_a_crash(keys: str) -> None:
    with pytest.raises(UnsealError):
        unseal(seal("secret", PUBLIC), keys)


def test_derived_secrets_survive_adding_a_new_key_in_front() -> None:
    """Tokens of emails still queued at rotation stay derivable (oldest key derives)."""
    rotated = f"{NEW_PRIVATE},{PRIVATE}"
    assert derive_secret(rotated, "activation") == derive_secret(PRIVATE, "activation")
