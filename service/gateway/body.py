"""Reading and validating JSON request bodies into frozen pydantic models."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from service.gateway.keys import SETTINGS

M = TypeVar("M", bound=BaseModel)
# No body of ours nests deeper than a few levels; deeper is an attack on the parser.
MAX_DEPTH = 32


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def content_type_of(request: web.Request) -> str:
    """The request's media type, or "" when the header cannot be parsed (the stdlib parser
    aiohttp uses raises IndexError on some malformed values, e.g. `;0*`: a 415, not a 500)."""
    try:
        return request.content_type
    except Exception:  # any parser failure means: not a type we take
        return ""


async def read_json_object(request: web.Request) -> dict[str, object]:
    """The body as a JSON object, or a 413 / 415 / 400 error."""
    content_type = content_type_of(request)
    if not _is_json(content_type):
        raise UnsupportedMediaType(f"got {content_type!r}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"the limit is {request.app[SETTINGS].max_body_bytes} bytes"
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):  # also numbers too long to convert
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels")
    return body


def _depth(value: object) -> int:
    """How deeply containers nest in a parsed JSON value (iteratively: no recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field errors without the offending input, which may be a password."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


def model_response(model: BaseModel, *, status: int = 200) -> web.Response:
    """A JSON response of an output model, in its wire (camelCase) form."""
    return web.json_response(
        model.model_dump(mode="json", by_alias=True, exclude_none=True), status=status
    )


def validate(model: type[M], body: dict[str, object]) -> M:
    """Build `model` from a JSON object, or raise a 400 listing every field error."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            "one or more fields are invalid", errors=validation_errors(exc)
        ) from None
