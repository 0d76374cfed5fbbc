"""Named errors map to stable HTTP statuses and problem `type` URIs (STYLE §5)."""

from __future__ import annotations

import pytest

from service import errors
from service.errors import PROBLEM_BASE, ApiError

EXPECTED = {
    errors.BadRequest: (400, "bad-request"),
    errors.ValidationFailed: (400, "validation"),
    errors.CaptchaFailed: (400, "captcha"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.RegistrationDisabled: (403, "registration-disabled"),
    errors.NotFound: (404, "not-found"),
    errors.Gone: (410, "gone"),
    errors.InvitationGone: (410, "invitation-gone"),
    errors.Conflict: (409, "conflict"),
    errors.EmailTaken: (409, "email-taken"),
    errors.UserNameTaken: (409, "username-taken"),
    errors.TokenAlreadyUsed: (409, "token-used"),
    errors.PayloadTooLarge: (413, "payload-too-large"),
    errors.UnsupportedMediaType: (415, "unsupported-media-type"),
    errors.IdempotencyKeyReused: (422, "idempotency-key-reused"),
    errors.RateLimited: (429, "rate-limited"),
    errors.ServiceUnavailable: (503, "unavailable"),
    errors.RegistrationFailed: (503, "registration-failed"),
}


def all_api_errors() -> list[type[ApiError]]:
    found: list[type[ApiError]] = []
    pending = [ApiError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize(("cls", "expected"), EXPECTED.items(), ids=[c.__name__ for c in EXPECTED])
def test_status_and_type_uri_are_stable(cls: type[ApiError], expected: tuple[int, str]) -> None:
    status, slug = expected
    error = cls()
    assert error.status == status
    assert error.type_uri == f"https://registrar.dev/problems/{slug}"


def test_every_api_error_in_the_module_is_pinned_here() -> None:
    in_module = {c for c in all_api_errors() if c.__module__ == errors.__name__} - {ApiError}
    assert in_module == set(EXPECTED)


def test_type_uris_and_titles_are_distinct() -> None:
    classes = all_api_errors()
    assert len({c().type_uri for c in classes}) == len(classes)
    assert len({c.title for c in classes}) == len(classes)


def test_type_uris_live_under_the_problem_base() -> None:
    assert all(c().type_uri.startswith(PROBLEM_BASE) for c in all_api_errors())


def test_detail_headers_and_extras_are_kept() -> None:
    error = errors.RateLimited("slow down", headers={"Retry-After": "3"}, limit=60)
    assert (error.detail, error.headers, error.extra) == (
        "slow down",
        {"Retry-After": "3"},
        {"limit": 60},
    )
    assert str(error) == "slow down"


def test_message_defaults_to_the_title() -> None:
    error = errors.EmailTaken()
    assert error.detail is None
    assert str(error) == errors.EmailTaken.title
    assert error.headers == {}


def test_subclasses_can_be_caught_as_their_family() -> None:
    assert issubclass(errors.EmailTaken, errors.Conflict)
    assert issubclass(errors.ValidationFailed, errors.BadRequest)
    assert issubclass(errors.RegistrationDisabled, errors.Forbidden)
    assert issubclass(errors.InvitationGone, errors.Gone)


def test_message_fate_errors_are_not_api_errors() -> None:
    assert not issubclass(errors.RetryableError, ApiError)
    assert not issubclass(errors.PermanentError, ApiError)
    assert not issubclass(errors.RetryableError, errors.PermanentError)


def test_every_503_tells_the_client_when_to_retry() -> None:
    assert errors.ServiceUnavailable().headers["Retry-After"] == "5"
    assert errors.RegistrationFailed("x").headers["Retry-After"] == "5"
