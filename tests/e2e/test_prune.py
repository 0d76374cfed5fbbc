"""`registrar prune` against the running service: an Idempotency-Key replay gets the
original answer after a prune, and past its retention the key is forgotten."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import free_port
from tests.e2e.test_cli import run_cli
from tests.e2e.test_self_registration import new_body, register_url

pytestmark = pytest.mark.e2e
WEEK_S = 7 * 86_400.0


def prune_lines(service, *args: str) -> list[dict]:
    done = run_cli("prune", *args, env=service.env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def step(lines: list[dict], table: str, rows: str) -> dict:
    return next(line for line in lines if line.get("table") == table and line["rows"] == rows)


async def test_an_idempotency_key_replay_after_a_prune_gets_the_original_answer(
    service, tenant, http, e2e_pool
):
    body = new_body()
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    async with http.post(register_url(service, tenant), json=body, headers=headers) as r:
        assert r.status == 200
        original = await r.json()

    lines = prune_lines(service)
    assert {"table", "rows", "retentionS", "deleted"} <= set(lines[0])
    assert step(lines, "registration_requests", "decided")["retentionS"] == WEEK_S
    assert lines[-1]["deleted"] == sum(line["deleted"] for line in lines[:-1])

    async with http.post(register_url(service, tenant), json=body, headers=headers) as r:
        assert r.status == 200  # inside the retention window: the same answer
        assert (await r.json())["id"] == original["id"]

    # A week and a day later the request (with its key) is past retention.
    await e2e_pool.execute(
        "UPDATE registration_requests SET created_at = now() - interval '8 days', "
        "decided_at = now() - interval '8 days' WHERE idempotency_key = $1",
        key,
    )
    dry = prune_lines(service, "--dry-run")
    assert step(dry, "registration_requests", "decided")["wouldDelete"] >= 1
    assert "wouldDelete" in dry[-1]
    assert await e2e_pool.fetchval(
        "SELECT count(*) FROM registration_requests WHERE idempotency_key = $1", key
    )

    lines = prune_lines(service)
    assert step(lines, "registration_requests", "decided")["deleted"] >= 1
    assert not await e2e_pool.fetchval(
        "SELECT count(*) FROM registration_requests WHERE idempotency_key = $1", key
    )
    # The key is forgotten: the same POST is a new request, and the address is taken.
    async with http.post(register_url(service, tenant), json=body, headers=headers) as r:
        assert r.status == 409


def test_prune_without_a_database_exits_non_zero_with_a_message(service):
    nowhere = f"postgresql://127.0.0.1:{free_port()}/x"
    env = {**service.env, "REGISTRAR_DATABASE_URL": nowhere}
    if "REGISTRAR_DATABASE_DIRECT_URL" in env:  # the PgBouncer run: prune connects directly
        env["REGISTRAR_DATABASE_DIRECT_URL"] = nowhere
    done = run_cli("prune", env=env)
    assert done.returncode != 0
    assert "prune stopped" in done.stderr and "Traceback" not in done.stderr
