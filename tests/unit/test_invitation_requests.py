"""Invitation HTTP bodies: invite / register-by-invitation and accepting (SPEC §4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.http import (
    AcceptInvitation,
    InviteRegisterRequest,
    InviteRequest,
    check_password,
    is_valid_locale,
)

SECRET = "correct horse battery"
ROLE = "6c1d1f9e-1b7a-4e33-9d55-5d2a8d4f0c11"


def invite(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"email": "bob@example.com", "locale": "en_US", "name": "Bob"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def accept(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Bob", "password": SECRET, "confirmPassword": SECRET}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def body_for(model: type, **overrides: Any) -> dict[str, Any]:
    """A valid body for `model`: register-by-invitation takes no name."""
    return invite(**overrides) if model is InviteRequest else invite(name=..., **overrides)


def error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.value.errors()}


# --- locale ----------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en_US", "de", "de_AT", "hr_HR", "fr"])
def test_language_with_optional_country_is_a_valid_locale(locale: str) -> None:
    assert is_valid_locale(locale)


@pytest.mark.parametrize(
    "locale",
    ["xx_YY", "en_us", "EN", "english", "en_ZZ", "en-US", "en_USA", "", "en_", "zz"],
)
def test_malformed_or_unknown_locales_are_rejected(locale: str) -> None:
    assert not is_valid_locale(locale)


@pytest.mark.parametrize("model", [InviteRegisterRequest, InviteRequest])
@pytest.mark.parametrize("locale", ["en_US", "de"])
def test_invite_bodies_accept_a_valid_locale(model: type, locale: str) -> None:
    assert model.model_validate(body_for(model, locale=locale)).locale == locale


@pytest.mark.parametrize("model", [InviteRegisterRequest, InviteRequest])
@pytest.mark.parametrize("locale", ["xx_YY", "en_us", "EN", "english", "en_ZZ"])
def test_invite_bodies_reject_an_invalid_locale(model: type, locale: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(body_for(model, locale=locale))
    assert error_fields(exc) == {"locale"}


def test_the_locale_is_optional() -> None:
    assert InviteRegisterRequest.model_validate({"email": "bob@example.com"}).locale is None


def test_a_locale_must_be_a_string() -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRegisterRequest.model_validate({"email": "bob@example.com", "locale": 7})
    assert error_fields(exc) == {"locale"}


# --- InviteRegisterRequest / InviteRequest ---------------------------------------------


def test_register_by_invitation_needs_only_an_email_and_normalizes_it() -> None:
    body = InviteRegisterRequest.model_validate({"email": "Bob@EXAMPLE.com"})
    assert body.email == "Bob@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "bob@", "", "a@b@c.com"])
def test_an_invalid_email_is_rejected(email: str) -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRegisterRequest.model_validate({"email": email})
    assert error_fields(exc) == {"email"}


def test_register_by_invitation_rejects_a_missing_email() -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRegisterRequest.model_validate({"locale": "de"})
    assert error_fields(exc) == {"email"}


@pytest.mark.parametrize("extra", [{"name": "Bob"}, {"roleId": ROLE}, {"Email": "x@y.com"}])
def test_register_by_invitation_rejects_unknown_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRegisterRequest.model_validate({"email": "bob@example.com", **extra})
    assert error_fields(exc) == set(extra)


def test_invite_takes_name_and_role_id_in_camel_case() -> None:
    body = InviteRequest.model_validate(invite(roleId=ROLE))
    assert (body.email, body.locale, body.name) == ("bob@example.com", "en_US", "Bob")
    assert body.role_id == uuid.UUID(ROLE)


def test_invite_role_id_is_optional() -> None:
    assert InviteRequest.model_validate(invite()).role_id is None


@pytest.mark.parametrize("name", [..., "", "x" * 201, None])
def test_invite_requires_a_name_of_1_to_200_characters(name: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRequest.model_validate(invite(name=name))
    assert error_fields(exc) == {"name"}


def test_invite_accepts_a_name_of_200_characters() -> None:
    assert InviteRequest.model_validate(invite(name="x" * 200)).name == "x" * 200


@pytest.mark.parametrize("role_id", ["admin", "1234", ROLE[:-1], 0, -1, 2**31, True, 1.0])
def test_invite_role_id_must_be_a_uuid_or_a_role_number(role_id: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRequest.model_validate(invite(roleId=role_id))
    assert error_fields(exc) == {"roleId"}


@pytest.mark.parametrize("role_id", [1, 3, 42, 2**31 - 1])
def test_invite_role_id_may_be_blynks_integer_role_id(role_id: int) -> None:
    assert InviteRequest.model_validate(invite(roleId=role_id)).role_id == role_id


@pytest.mark.parametrize("extra", [{"role_id": ROLE}, {"password": SECRET}, {"userName": "b"}])
def test_invite_rejects_unknown_and_snake_case_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        InviteRequest.model_validate(invite(**extra))
    assert error_fields(exc) == set(extra)


def test_invite_bodies_are_frozen() -> None:
    body = InviteRequest.model_validate(invite())
    with pytest.raises(ValidationError):
        body.name = "Eve"  # type: ignore[misc]


# --- AcceptInvitation ------------------------------------------------------------------


def test_accept_invitation_takes_name_and_matching_passwords() -> None:
    body = AcceptInvitation.model_validate(accept(name="  Bob Builder "))
    assert body.name == "Bob Builder"
    assert body.password == body.confirm_password == SECRET


@pytest.mark.parametrize("name", [..., "", "   ", "x" * 201])
def test_accept_invitation_requires_a_non_blank_name(name: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        AcceptInvitation.model_validate(accept(name=name))
    assert error_fields(exc) == {"name"}


@pytest.mark.parametrize("password", ["short", "1234567", " " * 12, "x" * 129])
def test_accept_invitation_enforces_the_password_policy(password: str) -> None:
    with pytest.raises(ValidationError) as exc:
        AcceptInvitation.model_validate(accept(password=password, confirmPassword=password))
    assert error_fields(exc) == {"password"}


@pytest.mark.parametrize("password", ["12345678", "x" * 128, " spaced password "])
def test_accept_invitation_accepts_passwords_at_the_policy_limits(password: str) -> None:
    body = AcceptInvitation.model_validate(accept(password=password, confirmPassword=password))
    assert body.password == password


def test_accept_invitation_rejects_passwords_that_differ() -> None:
    with pytest.raises(ValidationError, match="password and confirmPassword differ"):
        AcceptInvitation.model_validate(accept(confirmPassword=SECRET + "!"))


def test_accept_invitation_requires_confirm_password() -> None:
    with pytest.raises(ValidationError) as exc:
        AcceptInvitation.model_validate(accept(confirmPassword=...))
    assert error_fields(exc) == {"confirmPassword"}


@pytest.mark.parametrize("extra", [{"email": "b@example.com"}, {"confirm_password": SECRET}])
def test_accept_invitation_rejects_unknown_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        AcceptInvitation.model_validate(accept(**extra))
    assert error_fields(exc) == set(extra)


def test_accept_invitation_keeps_passwords_out_of_its_repr() -> None:
    assert SECRET not in repr(AcceptInvitation.model_validate(accept()))


def test_check_password_returns_a_valid_password_unchanged() -> None:
    assert check_password(SECRET) == SECRET
    with pytest.raises(ValueError, match="8 to 128"):
        check_password("short")
    with pytest.raises(ValueError, match="whitespace"):
        check_password("\t" * 10)
