"""HTTP bodies of the public APIs. Input models forbid unknown fields and coerce nothing."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from babel import Locale
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)
from pydantic.alias_generators import to_camel

USER_NAME = re.compile(r"^[A-Za-z0-9._\-@]{3,64}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
ACTIVATION_PLACEHOLDER = "{activationToken}"
RECOVERY_PLACEHOLDER = "{passwordRecoveryToken}"


LOCALE_SHAPE = re.compile(r"^(?P<language>[a-z]{2})(?:_(?P<territory>[A-Z]{2}))?$")
NAME_MAX = 200


def is_valid_locale(value: str) -> bool:
    """ISO 639-1 language, optionally `_` and an ISO 3166-1 alpha-2 country (per Babel)."""
    match = LOCALE_SHAPE.fullmatch(value)
    if match is None:
        return False
    names = Locale("en")
    territory = match["territory"]
    return match["language"] in names.languages and (
        territory is None or (territory in names.territories and territory != "ZZ")
    )


def is_plain_text(value: str) -> bool:
    """Storable and hashable text: no NUL (PostgreSQL text cannot hold it) and no lone
    UTF-16 surrogate (JSON escapes can carry one; it has no UTF-8 encoding)."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _plain_text(value: str) -> str:
    if not is_plain_text(value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


def _optional_plain_text(value: str | None) -> str | None:
    return None if value is None else _plain_text(value)


def check_password(value: str) -> str:
    """The password policy: 8-128 characters, not only whitespace."""
    _plain_text(value)
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValueError(f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    if not value.strip():
        raise ValueError("must not be only whitespace")
    return value


def normalize_email(value: str) -> str:
    """Syntax-check an address (no DNS) and return its normalized form."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


class _Input(BaseModel):
    # Wire names only (camelCase): a snake_case key is an unknown field, hence a 400.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, alias_generator=to_camel)


def _user_name(value: str) -> str:
    if not USER_NAME.fullmatch(value):
        raise ValueError("must be 3-64 characters of letters, digits and ._-@")
    return value


def _activation_url(value: str) -> str:
    if ACTIVATION_PLACEHOLDER not in value:
        raise ValueError(f"must contain the {ACTIVATION_PLACEHOLDER} placeholder")
    return value


def _recover_url(value: str) -> str:
    if RECOVERY_PLACEHOLDER not in value:
        raise ValueError(f"must contain the {RECOVERY_PLACEHOLDER} placeholder")
    return value


def _locale(value: str) -> str:
    if not is_valid_locale(value):
        raise ValueError("must be an ISO 639-1 language, optionally _ and a country")
    return value


def _person_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


ROLE_NUMBER_MAX = 2**31 - 1


def _role_ref(value: object) -> uuid.UUID | int:
    """A role by its id (a UUID string) or its number in the tenant (Blynk's integer
    roleId: Admin 1, Staff 2, User 3, ...); one error, at the field, for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ROLE_NUMBER_MAX:
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValueError("must be a role id (UUID) or a role number (1, 2, 3, ...)")


# Field types with their rules attached, shared by every body that has such a field.
PlainText = Annotated[str, AfterValidator(_plain_text)]
Secret = Annotated[
    str,
    Field(min_length=1, max_length=512, repr=False),
    AfterValidator(_plain_text),
]
LoginName = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_plain_text)]
Email = Annotated[str, AfterValidator(normalize_email)]
Password = Annotated[str, AfterValidator(check_password), Field(repr=False)]
Confirmation = Annotated[str, Field(repr=False)]
UserName = Annotated[str, AfterValidator(_user_name)]
ActivationUrl = Annotated[str, AfterValidator(_activation_url)]
LocaleTag = Annotated[str, AfterValidator(_locale)]
PersonName = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_person_name)]
RoleRef = Annotated[
    uuid.UUID | int,
    PlainValidator(
        _role_ref,
        json_schema_input_type=uuid.UUID | Annotated[int, Field(ge=1, le=ROLE_NUMBER_MAX)],
    ),
]


class _WithNewPassword(_Input):
    password: Password
    confirm_password: Confirmation

    @model_validator(mode="after")
    def _passwords_match(self) -> _WithNewPassword:
        if self.password != self.confirm_password:
            raise ValueError("password and confirmPassword differ")
        return self


class RegisterRequest(_WithNewPassword):
    """Body of POST /{apiKey}/register (Baasic createUserParams)."""

    activation_url: ActivationUrl
    challenge_identifier: str
    challenge_response: str
    email: Email
    user_name: UserName


class ResendRequest(_Input):
    """Body of POST /{apiKey}/register/resend."""

    email: Email


class InviteRegisterRequest(_Input):
    """Body of POST /api/v1/organization/users/register (Blynk)."""

    email: Email
    locale: LocaleTag | None = None


class InviteRequest(InviteRegisterRequest):
    """Body of POST /api/v1/organization/users/invite: the same, with prefilled data."""

    name: PersonName
    role_id: RoleRef | None = None


class AcceptInvitation(_WithNewPassword):
    """What the invitee enters: JSON to the API, or the hosted page's form fields."""

    name: PersonName


class LoginForm(BaseModel):
    """Body of POST /{apiKey}/login: an OAuth 2 password grant (form-urlencoded), with
    OAuth's own field names."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    grant_type: Literal["password"]
    username: LoginName
    password: Annotated[Secret, Field(max_length=PASSWORD_MAX)]


class TokenBody(_Input):
    """Body of PUT and DELETE /{apiKey}/login: the token to refresh or end. Without
    `token`, the Authorization bearer is meant (Baasic's SDK documents logout calls that
    send an empty body)."""

    token: Annotated[str | None, AfterValidator(_optional_plain_text)] = Field(
        default=None, min_length=1, max_length=512, repr=False
    )
    type: str = "bearer"


class RecoverPasswordRequest(_Input):
    """Body of POST /{apiKey}/recover-password: `userName` is the userName or the email."""

    user_name: LoginName
    recover_url: Annotated[str, AfterValidator(_recover_url)]
    challenge_identifier: str = ""
    challenge_response: str = ""


class ResetPasswordRequest(_Input):
    """Body of PUT /{apiKey}/recover-password. `confirmPassword` is optional (Baasic's
    clients compare the two inputs themselves); checked when present."""

    password_recovery_token: Secret
    new_password: Password
    confirm_password: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _passwords_match(self) -> ResetPasswordRequest:
        if self.confirm_password is not None and self.new_password != self.confirm_password:
            raise ValueError("newPassword and confirmPassword differ")
        return self


class ChangePasswordRequest(_Input):
    """Body of PUT /{apiKey}/users/{userName}/change-password. `oldPassword` is required
    when users change their own password. Baasic's SDKs also send `siteUrl` and spell the
    notification flag both ways: accepted, the first wins."""

    new_password: Password
    old_password: Annotated[str | None, AfterValidator(_optional_plain_text)] = Field(
        default=None, max_length=PASSWORD_MAX, repr=False
    )
    send_mail_notification: bool | None = None
    send_email_notification: bool | None = None
    site_url: str | None = None

    @property
    def notify(self) -> bool:
        for flag in (self.send_mail_notification, self.send_email_notification):
            if flag is not None:
                return flag
        return True


class DeleteAccountRequest(_Input):
    """Body of DELETE /{apiKey}/users/me: the account's password, once more."""

    password: Annotated[Secret, Field(max_length=PASSWORD_MAX)]


class _Output(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Link(_Output):
    href: str
    templated: bool | None = None


class Role(_Output):
    id: uuid.UUID
    name: str
    description: str = ""


class User(_Output):
    """The Baasic user representation (camelCase, HAL links)."""

    id: uuid.UUID
    user_name: str
    email: str
    name: str
    creation_date: datetime
    date_created: datetime
    date_updated: datetime
    is_approved: bool
    is_locked_out: bool
    roles: list[Role]
    dashboard_settings: dict[str, Any]
    locale: str
    links: dict[str, Link] = Field(alias="_links")


class Token(BaseModel):
    """Baasic's token object (login, refresh, activation): OAuth 2 field names."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int
    sliding_window: int | None = None


class ActivatedUser(User):
    """The activated user, logged in: the user's fields and a token's, side by side (the
    token's under their OAuth names, as Baasic's SDKs read them)."""

    access_token: str = Field(alias="access_token")
    token_type: Literal["bearer"] = Field(default="bearer", alias="token_type")
    expires_in: int = Field(alias="expires_in")
    sliding_window: int | None = Field(default=None, alias="sliding_window")


class RequestStatus(_Output):
    """Body of 202 answers: the registration is accepted and pending."""

    request_id: uuid.UUID
    status: Literal["pending"] = "pending"
    links: dict[str, Link] = Field(alias="_links")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
