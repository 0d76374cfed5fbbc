"""GET /openapi.json: a valid OpenAPI 3.1 document that describes every route."""

from __future__ import annotations

from openapi_spec_validator import validate

from service.gateway.app import create_app
from service.gateway.openapi import build_openapi
from tests.gateway.test_limits import gateway_client


def test_the_document_is_valid_openapi_3_1():
    document = build_openapi()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_gateway_route_is_described(settings):
    app = create_app(settings)
    routes = {
        # A route with a trailing slash (for Baasic's SDKs) is the route without it.
        (route.method.lower(), route.resource.canonical.rstrip("/") or "/")
        for route in app.router.routes()
        if route.method not in ("HEAD", "OPTIONS")  # CORS preflights: machinery, not API
    }
    described = {
        (method, path) for path, item in build_openapi()["paths"].items() for method in item
    }
    assert routes == described


def test_request_schemas_are_the_models_that_validate_requests():
    schemas = build_openapi()["components"]["schemas"]
    register = schemas["RegisterRequest"]
    assert set(register["required"]) == {
        "activationUrl",
        "challengeIdentifier",
        "challengeResponse",
        "confirmPassword",
        "email",
        "password",
        "userName",
    }
    assert register["additionalProperties"] is False  # unknown fields are a 400
    assert "_links" in schemas["User"]["properties"]


async def test_the_gateway_serves_it(settings):
    client = await gateway_client(settings)
    try:
        response = await client.get("/openapi.json")
        assert response.status == 200
        assert await response.json() == build_openapi()
    finally:
        await client.close()
