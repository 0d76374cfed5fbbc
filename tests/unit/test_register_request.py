"""RegisterRequest: the self-service registration body (SPEC §3 validation table)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.http import RegisterRequest

SECRET = "correct horse battery"


def body(**overrides: Any) -> dict[str, Any]:
    valid: dict[str, Any] = {
        "activationUrl": "https://app.example.com/activate/{activationToken}",
        "challengeIdentifier": "challenge",
        "challengeResponse": "response",
        "confirmPassword": SECRET,
        "email": "alice@example.com",
        "password": SECRET,
        "userName": "alice",
    }
    valid.update(overrides)
    return {k: v for k, v in valid.items() if v is not ...}


def error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.value.errors()}


def test_valid_camel_case_body_is_accepted_and_exposed_in_snake_case() -> None:
    request = RegisterRequest.model_validate(body())
    assert request.user_name == "alice"
    assert request.email == "alice@example.com"
    assert request.activation_url == "https://app.example.com/activate/{activationToken}"
    assert request.challenge_identifier == "challenge"
    assert request.challenge_response == "response"
    assert request.password == request.confirm_password == SECRET


@pytest.mark.parametrize(
    "field",
    [
        "activationUrl",
        "challengeIdentifier",
        "challengeResponse",
        "confirmPassword",
        "email",
        "password",
        "userName",
    ],
)
def test_every_field_is_required(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(**{field: ...}))
    assert field in error_fields(exc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("userName", 12345),
        ("email", ["alice@example.com"]),
        ("challengeIdentifier", 1),
        ("challengeResponse", None),
        ("activationUrl", {"href": "x"}),
        ("password", 123456789),
    ],
)
def test_wrong_types_are_rejected_not_coerced(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(**{field: value}))
    assert field in error_fields(exc)


def test_unknown_fields_are_forbidden() -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(isAdmin=True))
    assert "isAdmin" in error_fields(exc)


def test_email_domain_is_lowercased_and_local_part_kept() -> None:
    request = RegisterRequest.model_validate(body(email="Alice.Smith@EXAMPLE.Com"))
    assert request.email == "Alice.Smith@example.com"


@pytest.mark.parametrize(
    "email", ["not-an-email", "alice@", "@example.com", "alice@exa mple.com", "a@@example.com"]
)
def test_invalid_email_is_rejected(email: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(email=email))
    assert "email" in error_fields(exc)


@pytest.mark.parametrize(
    "user_name", ["abc", "a" * 64, "john.doe", "john_doe-1", "me@home", "UPPER123"]
)
def test_user_name_of_3_to_64_allowed_characters_is_accepted(user_name: str) -> None:
    assert RegisterRequest.model_validate(body(userName=user_name)).user_name == user_name


@pytest.mark.parametrize(
    "user_name", ["ab", "a" * 65, "john doe", "john!", "jöhn", "abc\n", "", "a/b/c"]
)
def test_user_name_outside_policy_is_rejected(user_name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(userName=user_name))
    assert "userName" in error_fields(exc)


@pytest.mark.parametrize("password", ["x" * 8, "x" * 128, "  pass  word  "])
def test_password_of_8_to_128_characters_is_accepted(password: str) -> None:
    request = RegisterRequest.model_validate(body(password=password, confirmPassword=password))
    assert request.password == password


@pytest.mark.parametrize("password", ["x" * 7, "x" * 129, " " * 8, "\t \n" * 4, ""])
def test_password_too_short_too_long_or_all_whitespace_is_rejected(password: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(password=password, confirmPassword=password))
    assert "password" in error_fields(exc)


def test_password_differing_from_confirm_password_is_rejected() -> None:
    with pytest.raises(ValidationError, match="confirmPassword differ"):
        RegisterRequest.model_validate(body(confirmPassword=SECRET + "!"))


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/activate",
        "https://app.example.com/activate/{activation_token}",
        "https://app.example.com/activate/{ActivationToken}",
    ],
)
def test_activation_url_without_placeholder_is_rejected(url: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RegisterRequest.model_validate(body(activationUrl=url))
    assert "activationUrl" in error_fields(exc)


def test_activation_url_with_placeholder_in_query_is_accepted() -> None:
    url = "https://app.example.com/activate?token={activationToken}"
    assert RegisterRequest.model_validate(body(activationUrl=url)).activation_url == url


def test_repr_and_str_do_not_reveal_the_password() -> None:
    request = RegisterRequest.model_validate(body())
    assert SECRET not in repr(request)
    assert SECRET not in str(request)
    assert "alice" in repr(request)


def test_request_is_frozen() -> None:
    request = RegisterRequest.model_validate(body())
    with pytest.raises(ValidationError):
        request.user_name = "mallory"  # type: ignore[misc]
