"""Errors to RFC 9457 problem+json, one JSON access-log line per request, correlation ids."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from service import metrics
from service.errors import ApiError, ServiceUnavailable
from service.gateway.headers import secure_html
from service.logs import correlation_id
from service.supervisor import is_transient

log = logging.getLogger("registrar.access")
PROBLEM_JSON = "application/problem+json"
# Blynk-shaped routes (SPEC §4, §11): their problems also carry Blynk's error body.
BLYNK_PATHS = "/api/v1/organization/"


def problem_response(
    status: int,
    *,
    type_uri: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> web.Response:
    """An `application/problem+json` response."""
    body: dict[str, object] = {"type": type_uri, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.json_response(body, status=status, headers=headers, content_type=PROBLEM_JSON)


def api_error_response(exc: ApiError) -> web.Response:
    """The problem+json answer of a named error."""
    return problem_response(
        exc.status,
        type_uri=exc.type_uri,
        title=exc.title,
        detail=exc.detail,
        headers=exc.headers,
        **exc.extra,
    )


def with_blynk_error(response: web.Response) -> web.Response:
    """The same problem with Blynk's `{"error": {"message": ...}}` beside its members (an
    RFC 9457 extension member): Blynk's clients read `error.message`, others the problem.
    The message is the detail, and the field errors when there are some."""
    body = json.loads(response.body)
    message = body.get("detail") or body["title"]
    if errors := body.get("errors"):
        message += ": " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    body["error"] = {"message": message}
    return web.json_response(
        body, status=response.status, headers=_kept(response.headers), content_type=PROBLEM_JSON
    )


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of an answer whose body, and so its type and length, is replaced."""
    return {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}


def _route_template(request: web.Request) -> str:
    # The templated route (/{apiKey}/register), never the raw path: paths carry API keys
    # and tokens, which must not reach the logs.
    # A trailing slash (Baasic's SDKs add one) is the same route.
    route = request.match_info.route
    resource = route.resource
    return resource.canonical.rstrip("/") or "/" if resource is not None else "unmatched"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn raised errors into problem+json; log each request once, without secrets."""
    request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    token = correlation_id.set(request_id)
    started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = api_error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # Keep headers such as Allow (405); the body, and so its type, is ours.
            response = problem_response(
                exc.status, type_uri="about:blank", title=exc.reason, headers=_kept(exc.headers)
            )
        except Exception as exc:
            if not is_transient(exc):
                log.exception("unhandled error", extra={"route": _route_template(request)})
                response = problem_response(
                    500, type_uri="about:blank", title="Internal Server Error"
                )
            else:
                # PostgreSQL or RabbitMQ is away (restart, failover, full queue): the client
                # may retry; with the same Idempotency-Key nothing is done twice.
                log.warning(
                    "dependency unavailable",
                    extra={"route": _route_template(request), "error": type(exc).__name__},
                )
                response = api_error_response(
                    ServiceUnavailable("a dependency is unavailable; retry later")
                )
        if response.content_type == PROBLEM_JSON and request.path.startswith(BLYNK_PATHS):
            response = with_blynk_error(response)
        response.headers["X-Request-Id"] = request_id
        secure_html(response)
        route = _route_template(request)
        elapsed = time.perf_counter() - started
        metrics.HTTP_REQUESTS.labels(request.method, route, str(response.status)).inc()
        metrics.HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": route,
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response
    finally:
        correlation_id.reset(token)
