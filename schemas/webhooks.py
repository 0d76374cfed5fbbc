"""HTTP bodies of the webhook API (SPEC §11): `POST|GET /api/v1/webhooks`,
`DELETE /api/v1/webhooks/{id}`, `POST /api/v1/webhooks/{id}/replay`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from schemas.http import _Input, _plain_text

MAX_URL_CHARS = 2048
MAX_EVENTS = 50

EventName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_plain_text)]


class WebhookCreate(_Input):
    """A new endpoint: where to POST, and which public events (routing keys such as
    `user.registered`, or CloudEvents types such as `registrar.user.registered.v1`;
    none or omitted: every public event)."""

    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS), AfterValidator(_plain_text)]
    events: Annotated[list[EventName], Field(max_length=MAX_EVENTS)] | None = None


class _Output(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class WebhookEndpoint(_Output):
    """An endpoint as shown to its tenant: never its secret."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    url: str
    events: list[str] | None = Field(description="routing keys; null: every public event")
    created_at: datetime
    disabled_at: datetime | None = Field(description="set when the receiver answered 410")
    disabled_reason: str | None
    pending: int = Field(description="deliveries not yet made (in flight or to be retried)")
    parked: int = Field(description="deliveries given up on; `replay` queues them again")
    failing: bool = Field(description="the last attempt failed; retried after a pause")
    last_error: str | None


class WebhookCreated(WebhookEndpoint):
    """The new endpoint with its signing secret, shown this once."""

    secret: str = Field(description="whsec_… (Standard Webhooks); verify every request with it")


class WebhookList(_Output):
    items: list[WebhookEndpoint]


class WebhookReplayed(_Output):
    id: uuid.UUID
    replayed: int = Field(description="parked deliveries queued again")
    enabled: bool
