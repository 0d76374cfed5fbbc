"""REGISTRAR_METRICS_PORT on the gateway (SPEC §2): /metrics there instead of on the public
port. The gateway runs in-process through `serve_gateway`, as `registrar gateway` runs it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from cli.serve import serve_gateway
from tests.conftest import free_port


async def start(settings, **kwargs):
    port, stop = free_port(), asyncio.Event()
    task = asyncio.create_task(serve_gateway(settings, "127.0.0.1", port, stop, **kwargs))
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if task.done():
                await task
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    return base, stop, task


async def status_of(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def test_with_a_metrics_port_metrics_leave_the_public_port(settings):
    metrics_port = free_port()
    own = settings.model_copy(update={"metrics_port": metrics_port, "metrics_host": "127.0.0.1"})
    base, stop, task = await start(own)
    try:
        async with aiohttp.ClientSession() as http:
            await status_of(http, f"{base}/healthz")  # counted in the metrics
            status, text = await status_of(http, f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            assert 'registrar_http_requests_total{method="GET",route="/healthz"' in text
            assert (await status_of(http, f"{base}/metrics"))[0] == 404
            ready, _ = await status_of(http, f"http://127.0.0.1:{metrics_port}/readyz")
            assert ready == 200
            async with http.get(f"{base}/openapi.json") as response:
                assert "/metrics" not in (await response.json())["paths"]
    finally:
        stop.set()
        await task
    with pytest.raises(aiohttp.ClientConnectionError):  # closed with the gateway
        async with aiohttp.ClientSession() as http:
            await status_of(http, f"http://127.0.0.1:{metrics_port}/metrics")


async def test_without_a_metrics_port_metrics_stay_on_the_public_port(settings):
    base, stop, task = await start(settings.model_copy(update={"metrics_port": None}))
    try:
        async with aiohttp.ClientSession() as http:
            status, text = await status_of(http, f"{base}/metrics")
            assert status == 200
            assert "registrar_http_requests_total" in text
    finally:
        stop.set()
        await task


async def test_run_leaves_the_metrics_port_to_its_workers(settings):
    """`registrar run` starts one metrics server for the whole process (the workers'):
    its gateway must not try to bind the same port, nor answer /metrics publicly."""
    metrics_port = free_port()
    own = settings.model_copy(update={"metrics_port": metrics_port, "metrics_host": "127.0.0.1"})
    base, stop, task = await start(own, metrics_server=False)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await status_of(http, f"{base}/metrics"))[0] == 404
            with pytest.raises(aiohttp.ClientConnectionError):
                await status_of(http, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        stop.set()
        await task
