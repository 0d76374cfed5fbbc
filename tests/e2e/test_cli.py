"""The `registrar` command as operators use it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.conftest import drop_database, drop_topology, free_port
from tests.e2e.conftest import REGISTRAR

pytestmark = pytest.mark.e2e


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([REGISTRAR, *args], env=env, capture_output=True, text=True, timeout=60)


def test_keys_generate_prints_two_env_lines():
    done = run_cli("keys", "generate", env=dict(os.environ))
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2
    assert lines[0].startswith("REGISTRAR_SEAL_PUBLIC_KEY=")
    assert lines[1].startswith("REGISTRAR_SEAL_PRIVATE_KEY=")
    assert len(lines[0].split("=", 1)[1]) == 44  # 32 bytes, base64


@pytest.mark.parametrize("command", [["gateway"], ["worker", "all"]])
def test_gateway_and_worker_refuse_to_start_without_keys(command, settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRAR_SEAL")}
    env["REGISTRAR_DATABASE_URL"] = settings.database_url
    done = run_cli(*command, env=env)
    assert done.returncode != 0
    assert "REGISTRAR_SEAL_" in done.stderr and "keys generate" in done.stderr


def test_tenant_and_token_create_print_json(service):
    tenant = service.cli(
        "tenant",
        "create",
        "Json",
        "--captcha",
        "pow",
        "--default-locale",
        "de_AT",
        "--duplicates",
        "silent",
    )
    assert uuid.UUID(tenant["id"]) and len(tenant["apiKey"]) >= 40
    assert tenant["captcha"] == "pow" and tenant["defaultLocale"] == "de_AT"
    token = service.cli("token", "create", "--tenant", tenant["id"])
    assert token["scopes"] == ["users:invite"] and len(token["token"]) >= 40

    bad = run_cli("tenant", "create", "X", "--default-locale", "xx_YY", env=service.env)
    assert bad.returncode == 2 and "unknown locale" in bad.stderr


@pytest.mark.parametrize(
    "prefix",
    ["app.example.com", "http://app.example.com/", "https://app.example.com@evil.test/"],
)
def test_tenant_create_refuses_a_prefix_that_is_not_an_https_url(service, prefix):
    done = run_cli("tenant", "create", "Bad", "--activation-url-prefix", prefix, env=service.env)
    assert done.returncode != 0 and not done.stdout
    assert "activation URL prefix" in done.stderr and prefix in done.stderr


async def test_tenant_rotate_key_prints_a_new_key_and_the_old_one_answers_401(service, http):
    tenant = service.cli("tenant", "create", "Rotating")
    rotated = service.cli("tenant", "rotate-key", tenant["id"])
    assert set(rotated) >= {"apiKey"} and rotated["id"] == tenant["id"]
    assert rotated["apiKey"] != tenant["apiKey"] and len(rotated["apiKey"]) >= 40

    def resend(key: str) -> str:
        return f"{service.base_url}/{key}/register/resend"

    async with http.post(resend(tenant["apiKey"]), json={"email": "a@example.com"}) as r:
        assert r.status == 401  # gateways forget a changed tenant on its NOTIFY
    async with http.post(resend(rotated["apiKey"]), json={"email": "a@example.com"}) as r:
        assert r.status == 204

    unknown = run_cli("tenant", "rotate-key", str(uuid.uuid4()), env=service.env)
    assert unknown.returncode != 0 and "no tenant" in unknown.stderr and not unknown.stdout


async def test_tenant_update_changes_only_what_it_is_given(service, http):
    tenant = service.cli("tenant", "create", "Updated", "--allowed-origin", "https://A.example/")
    assert tenant["allowedOrigins"] == ["https://a.example"]
    updated = service.cli(
        "tenant", "update", tenant["id"], "--duplicates", "silent",
        "--allowed-origin", "https://b.example", "--allowed-origin", "http://localhost:3000",
    )  # fmt: skip
    assert updated["allowedOrigins"] == ["https://b.example", "http://localhost:3000"]
    assert updated["duplicates"] == "silent" and updated["captcha"] == tenant["captcha"]
    assert "apiKey" not in updated
    cleared = service.cli("tenant", "update", tenant["id"], "--no-allowed-origins")
    assert cleared["allowedOrigins"] == [] and cleared["duplicates"] == "silent"

    preflight = {"Origin": "https://b.example", "Access-Control-Request-Method": "POST"}
    async with http.options(
        f"{service.base_url}/{tenant['apiKey']}/register", headers=preflight
    ) as r:
        assert r.status == 403  # no origin is listed any more

    bad = run_cli(
        "tenant", "update", tenant["id"], "--allowed-origin", "https://x/y", env=service.env
    )
    assert bad.returncode == 2 and "allowed origin" in bad.stderr
    unknown = run_cli("tenant", "update", str(uuid.uuid4()), "--name", "x", env=service.env)
    assert unknown.returncode != 0 and "no tenant" in unknown.stderr


def test_token_list_prints_json_lines_without_the_token(service):
    tenant = service.cli("tenant", "create", "Listed")
    first = service.cli("token", "create", "--tenant", tenant["id"])
    second = service.cli("token", "create", "--tenant", tenant["id"], "--scope", "users:invite")
    service.cli("token", "revoke", first["id"])

    done = run_cli("token", "list", "--tenant", tenant["id"], env=service.env)
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["id"] for line in lines] == [first["id"], second["id"]]
    for line in lines:
        assert set(line) == {"id", "tenantId", "scopes", "createdAt", "revokedAt"}
        assert line["tenantId"] == tenant["id"] and line["scopes"] == ["users:invite"]
    assert lines[0]["revokedAt"] is not None and lines[1]["revokedAt"] is None
    assert first["token"] not in done.stdout and second["token"] not in done.stdout

    other = run_cli("token", "list", "--tenant", str(uuid.uuid4()), env=service.env)
    assert other.returncode == 0 and other.stdout == ""


def test_migrate_twice_is_a_no_op(service):
    done = run_cli("migrate", env=service.env)
    assert done.returncode == 0 and json.loads(done.stdout) == {"applied": []}


async def test_run_serves_everything_with_a_development_mailbox(
    settings, tmp_path, amqp_connection
):
    port, smtp_port = free_port(), free_port()
    prefix = f"{settings.amqp_prefix}_run"
    # Its own database too: relays of the shared test database would take its outbox rows.
    database_url = f"{settings.database_url}_run"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REGISTRAR_SEAL", "REGISTRAR_SMTP"))
    } | {
        "REGISTRAR_DATABASE_URL": database_url,
        "REGISTRAR_AMQP_PREFIX": prefix,
        "REGISTRAR_VAR_DIR": str(tmp_path / "var"),
        "REGISTRAR_DEV_SMTP_PORT": str(smtp_port),
    }
    proc = subprocess.Popen(
        [REGISTRAR, "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        tenant = json.loads(
            run_cli(
                "tenant", "create", "Run", "--activation-url-prefix", "https://a.example/", env=env
            ).stdout
        )
        body = json.dumps(
            {
                "activationUrl": "https://a.example/{activationToken}",
                "challengeIdentifier": "-",
                "challengeResponse": "-",
                "email": "run@example.com",
                "userName": "runner",
                "password": "run password 1",
                "confirmPassword": "run password 1",
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/{tenant['apiKey']}/register",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            assert response.status == 200
        mail_dir = tmp_path / "var" / "mail"
        for _ in range(100):
            if list(mail_dir.glob("*.eml")):
                break
            time.sleep(0.1)
        (eml,) = mail_dir.glob("*.eml")
        assert "https://a.example/" in eml.read_text()
        assert (tmp_path / "var" / "seal.env").stat().st_mode & 0o077 == 0
        with urllib.request.urlopen(base + "/_dev/mail", timeout=5) as page:
            assert "run@example.com" in page.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()[-2000:]
        await drop_topology(amqp_connection, prefix)
        await drop_database(database_url)
