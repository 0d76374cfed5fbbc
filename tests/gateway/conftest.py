"""Fixtures of the in-process gateway tests."""

from __future__ import annotations

import pytest

from service import tenants


@pytest.fixture
async def api_key(pool) -> str:
    _, key = await tenants.create_tenant(
        pool, name="limits", activation_url_prefixes=["https://app.example.com/"]
    )
    return key
