"""Bodies and query parameters of the Blynk-shaped organization users API (SPEC §11,
reference/blynk-users.md): integer ids, 0-based pages, Blynk's field names."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from schemas.http import ROLE_NUMBER_MAX, Email, LocaleTag, Problem, check_password

# Blynk's ids are int64; larger values could not even reach PostgreSQL (bigint).
INT64_MAX = 2**63 - 1
# 0-based pages; the bound keeps page * size within bigint for PostgreSQL's OFFSET.
PAGE_MAX = 2**31 - 1
SIZE_MAX = 100
QUERY_MAX = 255
NAME_MAX = 50
# Blynk's rule for `name`: letters, hyphens, spaces, dots and apostrophes.
BLYNK_NAME = re.compile(r"^(?:[^\W\d_]|[-. '\u2019])+$")  # \u2019: the typographic apostrophe

UserStatus = Literal["Pending", "Active", "Inactive", "Suspended"]

# Search `sortBy`: Blynk's column display names (matched case-insensitively) -> the
# field they sort by. Blynk columns registrar has no data for (every user of an
# organization is equal there) sort by the user id alone.
SORT_BY: dict[str, str] = {
    "user id": "id",
    "name": "name",
    "email": "email",
    "status": "status",
    "role": "roleId",
    "registered at": "registeredAt",
    "organization name": "id",
    "devices count": "id",
    "country": "id",
    "phone number": "id",
}


def _blynk_name(value: str) -> str:
    value = value.strip()
    if not BLYNK_NAME.fullmatch(value) or not any(c.isalpha() for c in value):
        raise ValueError("must be letters, hyphens, spaces, dots and apostrophes")
    return value


def _optional_password(value: str | None) -> str | None:
    return None if value is None else check_password(value)


BlynkName = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_blynk_name)]


class _Query(BaseModel):
    # Query strings carry text: numbers are parsed from it (lax), unknown parameters
    # (e.g. Blynk's includeSubOrgUsers: an organization here has no sub-organizations)
    # are ignored, as web servers commonly do.
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel)


class PageQuery(_Query):
    """`page` (0-based) and `size` (1-100) of GET /api/v1/organization/users."""

    page: int = Field(default=0, ge=0, le=PAGE_MAX)
    size: int = Field(default=20, ge=1, le=SIZE_MAX)


class SearchQuery(PageQuery):
    """GET /api/v1/organization/search/users: `query` matched case-insensitively in name
    and email (empty: everyone), sorted by `sortBy` (a Blynk column name) and `sortOrder`."""

    query: str = Field(default="", max_length=QUERY_MAX)
    sort_by: str = "User Id"
    sort_order: Literal["ASC", "DESC"] = "ASC"

    @field_validator("query")
    @classmethod
    def _plain(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        return value

    @field_validator("sort_by")
    @classmethod
    def _known_column(cls, value: str) -> str:
        if value.strip().lower() not in SORT_BY:
            raise ValueError(f"must be one of: {', '.join(n.title() for n in SORT_BY)}")
        return value

    @field_validator("sort_order", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def sort_field(self) -> str:
        return SORT_BY[self.sort_by.strip().lower()]


class UserQuery(_Query):
    """`userId` of GET /api/v1/organization/user."""

    user_id: int = Field(ge=1, le=INT64_MAX)


class RoleQuery(UserQuery):
    """`userId` and `roleId` of PUT /api/v1/organization/users/role."""

    role_id: int = Field(ge=1, le=ROLE_NUMBER_MAX)


class CreateUser(BaseModel):
    """Body of POST /api/v1/organization/users/create. Without `password` the user gets
    an invitation email and sets one; `locale` chooses that email's language."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, alias_generator=to_camel)

    email: Email
    name: BlynkName
    password: Annotated[str | None, AfterValidator(_optional_password)] = Field(
        default=None, repr=False
    )
    locale: LocaleTag | None = None


class _Output(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class UserSummary(_Output):
    """An item of a users page. `roleId` is null for a user without any role."""

    id: int
    name: str
    email: str
    role_id: int | None
    org_id: int
    status: UserStatus


class OrgUser(UserSummary):
    """The full user (get, change role). Times are epoch milliseconds; `lastLoggedAt` is
    null until the first login."""

    locale: str
    registered_at: int
    last_logged_at: int | None
    last_modified_ts: int


class UsersPage(_Output):
    content: list[UserSummary]
    total_elements: int


class BlynkErrorMessage(BaseModel):
    message: str


class BlynkProblem(Problem):
    """The error body of Blynk-shaped routes: problem details with Blynk's own error body,
    `"error": {"message": ...}`, as an extension member."""

    error: BlynkErrorMessage
