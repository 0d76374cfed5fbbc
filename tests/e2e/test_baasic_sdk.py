"""Baasic's official JavaScript SDK (baasic-sdk-javascript 2.0.12, under Node with a
fetch-based HTTP client) drives registrar through the account life cycle unchanged
(SPEC §3, §10): register → activate → login → load user → refresh → logout → recover →
reset → login → change password → login.

tests/sdk/flow.mjs holds one SDK app in a Node process and runs one step per line; this
test feeds it the steps and reads the mailbox in between. `make sdk` installs it."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import text_of
from tests.e2e.test_self_registration import activation_token_in, new_body

pytestmark = pytest.mark.e2e
HARNESS = Path(__file__).parents[1] / "sdk"
RECOVER_URL = "https://app.example.com/sdk-reset/{passwordRecoveryToken}"
TOKEN_FIELDS = {"access_token", "token_type", "expires_in"}


@dataclass(frozen=True)
class Answer:
    """What one SDK call settled with, and the token the SDK holds afterwards."""

    status: int | None
    body: Any
    token: str | None
    requests: list[dict]  # what the SDK sent: shown when an assertion fails


class BaasicSdk:
    """One SDK app in one Node process, as in one browser tab: its token lives on."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def __call__(self, step: str, **args: Any) -> Answer:
        line = json.dumps({"step": step, **args}).encode() + b"\n"
        self.process.stdin.write(line)
        await self.process.stdin.drain()
        answer = await asyncio.wait_for(self.process.stdout.readline(), timeout=30)
        if not answer:
            stderr = await self.process.stderr.read()
            raise AssertionError(f"the SDK harness died at {step}: {stderr.decode()}")
        answer = json.loads(answer)
        assert not answer["errors"], f"{step} threw: {answer}"
        return Answer(answer["status"], answer["body"], answer["token"], answer["requests"])


@pytest.fixture
def node() -> str:
    """The node executable; without it the test is skipped (before any process starts)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed: Baasic's JavaScript SDK cannot run")
    if not (HARNESS / "node_modules" / "baasic-sdk-javascript").is_dir():
        pytest.fail("tests/sdk has no node_modules: run `make sdk` (npm ci --prefix tests/sdk)")
    return path


@pytest.fixture
async def sdk(node, service, tenant):
    process = await asyncio.create_subprocess_exec(
        node,
        str(HARNESS / "flow.mjs"),
        service.base_url,
        tenant["apiKey"],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    yield BaasicSdk(process)
    process.stdin.close()
    await asyncio.wait_for(process.wait(), timeout=10)


def recovery_token_in(message) -> str:
    match = re.search(r"https://app\.example\.com/sdk-reset/([A-Za-z0-9_\-]+)", text_of(message))
    assert match, "recovery link missing from the email"
    return match.group(1)


async def test_baasic_sdk_registers_activates_signs_in_and_changes_passwords(sdk, mailbox):
    body = new_body()
    name, email, password = body["userName"], body["email"], body["password"]

    registered = await sdk("register", **body)
    assert registered.status == 200, registered
    assert registered.body["userName"] == name and registered.body["isApproved"] is False
    assert registered.token is None

    # Activation signs in: the SDK stores the token fields it finds beside the user's.
    activation_token = activation_token_in(await mailbox.wait_for(lambda m: m["To"] == email))
    activated = await sdk("activate", activationToken=activation_token)
    assert activated.requests[0]["url"].endswith(f"/register/activate/{activation_token}/")
    assert activated.status == 200, activated
    assert activated.body["id"] == registered.body["id"] and activated.body["isApproved"]
    assert set(activated.body) >= TOKEN_FIELDS, activated
    assert activated.body["token_type"] == "bearer"
    assert activated.token == activated.body["access_token"]

    signed_in = await sdk("login", username=name, password=password, options=["sliding"])
    assert signed_in.status == 201, signed_in
    assert set(signed_in.body) >= TOKEN_FIELDS | {"sliding_window"}
    assert signed_in.token == signed_in.body["access_token"] != activated.token

    me = await sdk("loadUserData")
    assert me.status == 200, me
    assert me.body["userName"] == name and me.body["email"] == email

    refreshed = await sdk("refresh")
    assert refreshed.status == 200, refreshed
    assert refreshed.token == refreshed.body["access_token"] != signed_in.token
    assert (await sdk("loadUserData")).status == 200  # the new token works

    logged_out = await sdk("logout")
    assert logged_out.status == 204, logged_out
    assert logged_out.token is None
    assert (await sdk("loadUserData")).status == 401  # no token any more

    requested = await sdk(
        "requestReset",
        userName=name,
        recoverUrl=RECOVER_URL,
        challengeIdentifier="none",
        challengeResponse="none",
    )
    assert requested.status == 201, requested
    recovery_token = recovery_token_in(
        await mailbox.wait_for(lambda m: m["To"] == email and "/sdk-reset/" in text_of(m))
    )
    recovered = f"recovered-{uuid.uuid4().hex[:8]}"
    reset = await sdk(
        "reset",
        passwordRecoveryToken=recovery_token,
        newPassword=recovered,
        confirmPassword=recovered,
    )
    assert reset.status == 200, reset

    signed_in = await sdk("login", username=name, password=recovered)
    assert signed_in.status == 201, signed_in
    newest = f"changed-{uuid.uuid4().hex[:8]}"
    changed = await sdk("changePassword", userName=name, oldPassword=recovered, newPassword=newest)
    assert changed.status == 200, changed

    # A password change ends every session: the server says invalid_token, the SDK forgets.
    ended = await sdk("loadUserData")
    assert ended.status == 401 and ended.body["details"] == "invalid_token", ended
    assert ended.token is None

    assert (await sdk("login", username=name, password=recovered)).status == 401
    signed_in = await sdk("login", username=name, password=newest)
    assert signed_in.status == 201, signed_in
    assert signed_in.token == signed_in.body["access_token"]
