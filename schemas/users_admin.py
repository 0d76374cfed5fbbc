"""HTTP bodies of the Baasic-shaped back office (SPEC §11): users and roles administered
with a tenant token, and the paged lists both answer with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from schemas.http import (
    NAME_MAX,
    ActivationUrl,
    Email,
    Link,
    PlainText,
    User,
    UserName,
    _Input,
    _Output,
    _WithNewPassword,
)

ROLES_MAX = 50  # roles given to one user at once
DESCRIPTION_MAX = 500


def _role_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


RoleName = Annotated[
    PlainText, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_role_name)
]
Description = Annotated[PlainText, Field(max_length=DESCRIPTION_MAX)]
# A person's name where none is fine too ("" clears it).
OptionalName = Annotated[PlainText, Field(max_length=NAME_MAX), AfterValidator(str.strip)]


class RoleRef(BaseModel):
    """A role as a Baasic SDK sends back the user it read: the object, by id or name."""

    model_config = ConfigDict(alias_generator=to_camel, strict=True, frozen=True, extra="ignore")

    id: uuid.UUID | None = Field(default=None, strict=False)
    name: RoleName | None = None

    @model_validator(mode="after")
    def _named(self) -> RoleRef:
        if self.id is None and self.name is None:
            raise ValueError("a role needs its id or its name")
        return self


class NewUser(_WithNewPassword):
    """Body of POST /{apiKey}/users. Not approved by default; `sendEmailNotification`
    mails an activation link (to `activationUrl`, required then) to a user who is not
    approved, and a welcome note to one who is."""

    user_name: UserName
    email: Email
    name: OptionalName | None = None
    roles: Annotated[list[RoleName], Field(max_length=ROLES_MAX)] | None = None
    is_approved: bool = False
    send_email_notification: bool = False
    activation_url: ActivationUrl | None = None

    @model_validator(mode="after")
    def _link_to_mail(self) -> NewUser:
        if self.send_email_notification and not self.is_approved and not self.activation_url:
            raise ValueError(
                "activationUrl is required to mail an activation link to a user who is "
                "not approved (sendEmailNotification)"
            )
        return self


class _ReadOnlyFields(_Input):
    """Fields of a representation that a client may send back unchanged (Baasic's SDKs
    PUT the object they read); accepted and ignored."""

    id: Any = None
    date_created: Any = None
    date_updated: Any = None
    links: Any = Field(default=None, alias="_links")
    embed: Any = None


class UserUpdate(_ReadOnlyFields):
    """Body of PUT /{apiKey}/users/{user}: what is given changes. `roles` (names, or role
    objects) replaces the user's roles. Approval and locking have endpoints of their own:
    `isApproved` and `isLockedOut` here are ignored, like the other read-only fields."""

    user_name: UserName | None = None
    email: Email | None = None
    name: OptionalName | None = None
    roles: Annotated[list[RoleName | RoleRef], Field(max_length=ROLES_MAX)] | None = None
    creation_date: Any = None
    is_approved: Any = None
    is_locked_out: Any = None
    dashboard_settings: Any = None
    locale: Any = None


class NewRole(_Input):
    """Body of POST /{apiKey}/lookups/roles."""

    name: RoleName
    description: Description = ""


class RoleUpdate(_ReadOnlyFields):
    """Body of PUT /{apiKey}/lookups/roles/{id}: what is given changes."""

    name: RoleName | None = None
    description: Description | None = None


class RoleDetail(_Output):
    """A role as the back office shows it (Baasic's role resource)."""

    id: uuid.UUID
    name: str
    description: str
    date_created: datetime
    date_updated: datetime
    links: dict[str, Link] = Field(alias="_links")


T = TypeVar("T")


class Page(_Output, Generic[T]):
    """Baasic's paged collection: one page of items and what it was asked with."""

    item: list[T]
    page: int
    records_per_page: int
    total_records: int
    search_query: str | None = None
    sort: str
    links: dict[str, Link] = Field(alias="_links")


class UserPage(Page[User]):
    """Body of GET /{apiKey}/users."""


class RolePage(Page[RoleDetail]):
    """Body of GET /{apiKey}/lookups/roles."""
