"""Named errors. Views and handlers raise these; one middleware turns them into
RFC 9457 problem+json, and the worker runner turns them into ack / retry / dead-letter."""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://registrar.dev/problems/"


class ApiError(Exception):
    """An error with an HTTP status and a stable problem `type` URI."""

    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug


class BadRequest(ApiError):
    status, slug, title = 400, "bad-request", "The request is invalid"


class ValidationFailed(BadRequest):
    slug, title = "validation", "The request body failed validation"


class CaptchaFailed(BadRequest):
    slug, title = "captcha", "The captcha check failed"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(ApiError):
    status, slug, title = 403, "forbidden", "Not allowed"


class RegistrationDisabled(Forbidden):
    slug, title = "registration-disabled", "Registration is disabled for this application"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"


class Gone(ApiError):
    status, slug, title = 410, "gone", "No longer available"


class InvitationGone(Gone):
    slug, title = "invitation-gone", "The invitation was used, revoked or has expired"


class Conflict(ApiError):
    status, slug, title = 409, "conflict", "Conflict"


class EmailTaken(Conflict):
    slug, title = "email-taken", "The email address is already registered"


class UserNameTaken(Conflict):
    slug, title = "username-taken", "The user name is already taken"


class TokenAlreadyUsed(Conflict):
    slug, title = "token-used", "The token has already been used"


class PayloadTooLarge(ApiError):
    status, slug, title = 413, "payload-too-large", "The request body is too large"


class UnsupportedMediaType(ApiError):
    status, slug, title = 415, "unsupported-media-type", "The body must be application/json"


class IdempotencyKeyReused(ApiError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused with another body"


class RateLimited(ApiError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(ApiError):
    status, slug, title = 503, "unavailable", "Temporarily unavailable, retry later"
    retry_after_s = 5

    def __init__(self, detail: str | None = None, **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(self.retry_after_s))


class RegistrationFailed(ServiceUnavailable):
    slug, title = "registration-failed", "The registration could not be processed"


# --- message fate, for workers ---------------------------------------------------------


class RetryableError(Exception):
    """Transient failure: the message goes back to the queue to be tried again."""


class PermanentError(Exception):
    """The message can never succeed: it goes to the dead-letter queue."""
