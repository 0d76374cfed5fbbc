"""Operations endpoints: Prometheus metrics of the gateway and of the workers, logs."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.test_self_registration import new_body, register_url

pytestmark = pytest.mark.e2e


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_gateway_and_workers_expose_prometheus_metrics(service, tenant, http, mailbox):
    async with http.post(register_url(service, tenant), json=(body := new_body())) as r:
        assert r.status == 200
    await mailbox.wait_for(lambda m: m["To"] == body["email"])

    async with http.get(service.base_url + "/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        gateway = await r.text()
    route = "/{apiKey}/register"
    assert sample(gateway, "registrar_http_requests_total", route=route, status="200") >= 1
    assert sample(gateway, "registrar_http_request_duration_seconds_count", route=route) >= 1
    assert (
        sample(gateway, "registrar_messages_published_total", routing_key="register.requested") >= 1
    )
    assert tenant["apiKey"] not in gateway  # routes by template, never the raw path

    async with http.get(service.workers_metrics_url) as r:
        assert r.status == 200
        workers = await r.text()
    assert sample(workers, "registrar_password_hash_seconds_count") >= 1
    assert sample(workers, "registrar_emails_sent_total", kind="activation") >= 1
    assert (
        sample(
            workers,
            "registrar_messages_consumed_total",
            routing_key="register.requested",
            outcome="ack",
        )
        >= 1
    )
    assert sample(workers, "registrar_messages_published_total", routing_key="user.registered") >= 1


async def test_every_log_line_is_json_with_a_correlation_id(service, tenant, http):
    async with http.post(
        register_url(service, tenant), json=new_body(), headers={"X-Request-Id": "trace-me-123"}
    ) as r:
        assert r.status == 200
        assert r.headers["X-Request-Id"] == "trace-me-123"
    lines = [line for line in service.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    assert {"ts", "level", "logger", "msg"} <= set(records[-1])
    traced = [r for r in records if r.get("correlation_id") == "trace-me-123"]
    assert any(r["msg"] == "request" and r["route"] == "/{apiKey}/register" for r in traced)
    assert not re.search(re.escape(tenant["apiKey"]), service.log_text())
