"""Webhooks end to end: the gateway and `registrar worker all` as processes, a real
receiver on a free port that verifies every request with the `standardwebhooks` package,
endpoints made over HTTP and with the CLI. Each event arrives exactly once, also across
a receiver outage; 410 disables an endpoint and `webhook replay` brings it back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
import uuid
from collections import Counter

import pytest

from tests.e2e.conftest import REGISTRAR
from tests.e2e.test_self_registration import new_body
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
async def receiver():
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="module")
def hooks_tenant(service) -> dict:
    """A tenant of its own, with a token that may manage webhooks."""
    tenant = service.cli(
        "tenant", "create", "Hooks", "--activation-url-prefix", "https://app.example.com/"
    )
    token = service.cli("token", "create", "--tenant", tenant["id"], "--scope", "webhooks:manage")
    return {**tenant, "auth": {"Authorization": f"Bearer {token['token']}"}}


def run_cli(service, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REGISTRAR, *args], env={**service.env, **env}, capture_output=True, text=True, timeout=60
    )


async def register(http, service, tenant, count: int) -> list[str]:
    """`count` registrations (accepted at once); their addresses."""
    emails = []
    for _ in range(count):
        body = new_body()
        async with http.post(
            f"{service.base_url}/{tenant['apiKey']}/register",
            json=body,
            headers={"Prefer": "respond-async"},
        ) as response:
            assert response.status == 202, await response.text()
        emails.append(body["email"])
    return emails


def registered_emails(received) -> Counter[str]:
    return Counter(
        r.event["data"]["email"] for r in received if r.event["type"].endswith("registered.v1")
    )


async def test_events_arrive_signed_and_exactly_once_across_a_receiver_outage(
    service, http, hooks_tenant, receiver, events_queue
) -> None:
    async with http.post(
        f"{service.base_url}/api/v1/webhooks",
        json={"url": receiver.url("/hooks"), "events": ["user.registered"]},
        headers=hooks_tenant["auth"],
    ) as response:
        assert response.status == 201, await response.text()
        endpoint = await response.json()
    receiver.secrets["/hooks"] = endpoint["secret"]

    before = await register(http, service, hooks_tenant, 5)
    await receiver.wait_for(lambda r: len(registered_emails(r.delivered("/hooks"))) == 5)
    await receiver.stop()  # the outage: connections refused
    during = await register(http, service, hooks_tenant, 5)
    await asyncio.sleep(1.5)  # attempts fail meanwhile
    await receiver.start()  # back on the same port
    after = await register(http, service, hooks_tenant, 5)

    emails = before + during + after
    await receiver.wait_for(
        lambda r: set(registered_emails(r.delivered("/hooks"))) == set(emails), timeout=30
    )
    await asyncio.sleep(1)  # room for a duplicate to show up
    delivered = receiver.delivered("/hooks")
    assert registered_emails(delivered) == Counter({email: 1 for email in emails})
    assert all(r.verified for r in receiver.at("/hooks"))
    assert Counter(r.webhook_id for r in delivered).most_common(1)[0][1] == 1
    # The webhook is the CloudEvent the events exchange carries: same id, type, data.
    published = {}
    while len(published) < len(emails):
        message = await asyncio.wait_for(events_queue.get(), 20)
        await message.ack()
        event = json.loads(message.body)
        if message.routing_key == "user.registered" and event["data"]["email"] in emails:
            published[event["id"]] = event
    for received in delivered:
        assert received.event == published[received.webhook_id]

    with urllib.request.urlopen(service.workers_metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    assert 'registrar_webhook_deliveries_total{outcome="delivered"}' in metrics


async def test_the_cli_manages_endpoints_and_replay_revives_one_a_410_disabled(
    service, http, hooks_tenant, receiver
) -> None:
    added = service.cli(
        "webhook", "add", "--tenant", hooks_tenant["id"], "--url", receiver.url("/cli"),
        "--event", "registrar.user.registered.v1",
    )  # fmt: skip
    assert added["secret"].startswith("whsec_") and added["events"] == ["user.registered"]
    receiver.secrets["/cli"] = added["secret"]
    receiver.answers["/cli"] = 410

    [email] = await register(http, service, hooks_tenant, 1)
    await receiver.wait_for(lambda r: len(r.at("/cli")) == 1)

    def listed() -> dict:
        done = run_cli(service, "webhook", "list", "--tenant", hooks_tenant["id"])
        assert done.returncode == 0, done.stderr
        assert added["secret"] not in done.stdout
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        return next(line for line in lines if line["id"] == added["id"])

    for _ in range(100):
        shown = listed()
        if shown["disabledAt"] and shown["parked"] == 1:
            break
        await asyncio.sleep(0.1)
    assert "410" in shown["disabledReason"]
    assert (shown["parked"], shown["pending"]) == (1, 0)

    receiver.answers["/cli"] = 204
    replayed = service.cli("webhook", "replay", added["id"])
    assert replayed == {"id": added["id"], "replayed": 1, "enabled": True}
    await receiver.wait_for(lambda r: len(r.delivered("/cli")) == 1)
    assert registered_emails(receiver.delivered("/cli")) == Counter({email: 1})

    assert service.cli("webhook", "remove", added["id"]) == {"id": added["id"], "removed": True}
    gone = run_cli(service, "webhook", "remove", added["id"])
    assert gone.returncode != 0 and "no webhook endpoint" in gone.stderr
    unknown = run_cli(service, "webhook", "replay", str(uuid.uuid4()))
    assert unknown.returncode != 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00::1]/hook",
        "https://224.0.0.1/hook",
        "http://hooks.example.com/hook",
    ],
)
def test_the_cli_refuses_forbidden_destinations_unless_private_ones_are_allowed(
    service, hooks_tenant, url
) -> None:
    done = run_cli(
        service,
        "webhook", "add", "--tenant", hooks_tenant["id"], "--url", url,
        REGISTRAR_WEBHOOK_ALLOW_PRIVATE="false",
    )  # fmt: skip
    assert done.returncode != 0
    assert "url:" in done.stderr and done.stdout == ""


def test_the_cli_needs_the_sealing_public_key_to_store_a_secret(service, hooks_tenant) -> None:
    env = {k: v for k, v in service.env.items() if k != "REGISTRAR_SEAL_PUBLIC_KEY"}
    done = subprocess.run(
        [
            REGISTRAR,
            "webhook",
            "add",
            "--tenant",
            hooks_tenant["id"],
            "--url",
            "https://x.example/",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "REGISTRAR_SEAL_PUBLIC_KEY" in done.stderr
