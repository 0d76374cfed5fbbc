"""deploy/compose.yaml, parsed (PyYAML resolves its anchors and merge keys as Compose
does): the services the READMEs name, each registrar service with the settings it needs
and only settings registrar reads, URLs that point at the stack's own services; and every
REGISTRAR_* name the READMEs mention is one registrar reads.

`docker compose config` would check the file against Compose's own schema too, but needs
the compose plugin, which a fresh machine does not have."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cli.admin import cmd_keys_generate
from cli.workers import WORKERS
from tests.deploy.files import COMPOSE, DEPLOY, ROOT, SETTINGS_ENV, unknown_settings

SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
WORKER_SERVICES = {f"worker-{role}": role for role in WORKERS}
# deploy/README.md: the infrastructure of the local stack (mailpit is the mail catcher).
INFRASTRUCTURE = {"postgres", "rabbitmq", "mailpit"}
# A README may name variables that the development scripts and the tests read, not the
# service.
READ_BY_SCRIPTS = {
    "REGISTRAR_SKIP_BROWSER": ROOT / "scripts" / "ensure-services.sh",
    "REGISTRAR_TEST_PGBOUNCER": ROOT / "tests" / "conftest.py",
}


def registrar_services() -> dict[str, dict[str, Any]]:
    """The services that run the registrar image (built from deploy/Dockerfile)."""
    return {
        name: service
        for name, service in SERVICES.items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def env(service: str) -> dict[str, str]:
    return SERVICES[service].get("environment", {})


def test_the_stack_has_the_infrastructure_the_gateway_and_one_service_per_worker() -> None:
    assert set(SERVICES) >= INFRASTRUCTURE | {"migrate", "gateway"} | set(WORKER_SERVICES)
    assert set(registrar_services()) == {"migrate", "gateway"} | set(WORKER_SERVICES)
    assert SERVICES["migrate"]["command"] == ["migrate"]
    assert SERVICES["gateway"]["command"][0] == "gateway"
    for service, role in WORKER_SERVICES.items():
        assert SERVICES[service]["command"] == ["worker", role]


def test_registrar_services_set_only_settings_registrar_reads() -> None:
    for name in registrar_services():
        assert not unknown_settings(env(name)), name


def test_each_registrar_service_gets_what_it_needs_and_only_workers_can_unseal() -> None:
    needs = {"REGISTRAR_DATABASE_URL"}
    for name in registrar_services():
        assert needs <= set(env(name)), name
    broker = needs | {"REGISTRAR_AMQP_URL", "REGISTRAR_SEAL_PUBLIC_KEY", "REGISTRAR_PUBLIC_URL"}
    assert broker <= set(env("gateway"))
    assert "REGISTRAR_SEAL_PRIVATE_KEY" not in env("gateway")
    for service in WORKER_SERVICES:
        assert broker | {"REGISTRAR_SEAL_PRIVATE_KEY", "REGISTRAR_METRICS_PORT"} <= set(
            env(service)
        )
    assert "REGISTRAR_SMTP_URL" in env("worker-mailer")


@pytest.mark.parametrize(
    ("setting", "service", "default_port"),
    [
        ("REGISTRAR_DATABASE_URL", "postgres", 5432),
        ("REGISTRAR_AMQP_URL", "rabbitmq", 5672),
        ("REGISTRAR_SMTP_URL", "mailpit", None),
    ],
)
def test_urls_point_at_the_stacks_own_services(
    setting: str, service: str, default_port: int | None
) -> None:
    """Inside the Compose network a service's name is its host name; the port must be
    one the service listens on (the container side of its published ports)."""
    published = SERVICES[service]["ports"]  # "host:container[/protocol]"
    container_ports = {int(str(port).split(":")[-1].split("/")[0]) for port in published}
    for name in registrar_services():
        if setting not in env(name):
            continue
        url = urlsplit(env(name)[setting])
        assert url.hostname == service, name
        assert (url.port or default_port) in container_ports, name


def test_the_env_file_compose_demands_is_what_registrar_keys_generate_prints(capsys) -> None:
    """README: `registrar keys generate > deploy/.env`; compose refuses to start without
    the variables it interpolates with `${NAME:?...}`."""
    demanded = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    cmd_keys_generate(None, None)
    printed = {line.split("=", 1)[0] for line in capsys.readouterr().out.splitlines()}
    assert demanded and demanded <= printed


def test_the_broker_loads_the_definitions_file_it_mounts() -> None:
    mounts = dict(volume.split(":")[:2] for volume in SERVICES["rabbitmq"]["volumes"])
    files = {target: DEPLOY / source for source, target in mounts.items() if source.startswith(".")}
    assert all(path.is_file() for path in files.values()), files
    conf = files["/etc/rabbitmq/rabbitmq.conf"].read_text()
    (loaded,) = re.findall(r"^management\.load_definitions\s*=\s*(\S+)", conf, re.MULTILINE)
    assert files[loaded] == DEPLOY / "rabbitmq" / "definitions.json"


def test_every_registrar_variable_the_readmes_name_is_read_by_something() -> None:
    """By Settings, or (a development switch) by the script that says it reads it."""
    named = set()
    for readme in (ROOT / "README.md", DEPLOY / "README.md"):
        named |= set(re.findall(r"\bREGISTRAR_[A-Z0-9_]*[A-Z0-9]\b", readme.read_text()))
    assert named
    assert unknown_settings(named) <= set(READ_BY_SCRIPTS)
    for name, script in READ_BY_SCRIPTS.items():
        assert name in script.read_text()
        assert name not in SETTINGS_ENV
