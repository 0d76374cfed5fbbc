"""deploy/rabbitmq/definitions.json imported into the real broker with `rabbitmqctl
import_definitions`, compared with the topology the code declares (service/amqp.py).

RabbitMQ 3.10 imports whole-broker files only, so the copy imported here is rewritten to
touch nothing else on the shared broker: every vhost becomes a throwaway one and every
user gets a unique suffix (the file defines `guest`; imported as is, it would reset the
real guest's password and tags). The code declares its topology, with the defaults the
file is written for, in a second throwaway vhost: both listings must be equal (queues
with types and arguments, exchanges, bindings). Then the file's worker user redeclares
the topology over the imported one, which RabbitMQ refuses (PRECONDITION_FAILED) on any
difference in arguments, and the gateway user finds its exchanges. The vhosts and users
are deleted afterwards. tests/unit/test_deploy_definitions.py compares the file with the
code in Python; this is what the broker itself makes of both."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest

from service import amqp
from service.amqp import Names
from tests.conftest import AMQP_URL
from tests.deploy.files import DEFAULTS, DEFINITIONS

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None,
    reason="rabbitmqctl not installed: importing definitions.json into the broker needs it",
)

NAMES = Names(DEFAULTS["amqp_prefix"])
# The broker users deploy/README.md documents.
WORKER_USER, GATEWAY_USER = "registrar-worker", "registrar-gateway"


async def rabbitmqctl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 or not check, f"rabbitmqctl {args[0]}: {done.stderr[:500]}"
    return done.stdout


def throwaway_copy(
    definitions: dict[str, Any], suffix: str
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The definitions with every vhost and user renamed; also the renamings (old -> new).
    An object naming a vhost or user the file does not define raises KeyError."""
    assert not definitions.get("global_parameters"), (
        "definitions.json sets global parameters: importing them would change the whole "
        "shared broker; teach this test to leave them out"
    )
    vhosts = {
        v["name"]: f"deploycheck-{suffix}-imported-{i}" for i, v in enumerate(definitions["vhosts"])
    }
    users = {u["name"]: f"{u['name']}-deploycheck-{suffix}" for u in definitions["users"]}
    renamed = copy.deepcopy(definitions)
    for section, items in renamed.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if section == "vhosts":
                item["name"] = vhosts[item["name"]]
            if section == "users":
                item["name"] = users[item["name"]]
            if "vhost" in item:
                item["vhost"] = vhosts[item["vhost"]]
            if "user" in item:  # permissions, topic_permissions
                item["user"] = users[item["user"]]
    return renamed, vhosts, users


def url_for(vhost: str, credentials: tuple[str, str] | None = None) -> str:
    url = urlsplit(AMQP_URL)
    if credentials is not None:
        user, password = (quote(part, safe="") for part in credentials)
        url = url._replace(netloc=f"{user}:{password}@{url.hostname}:{url.port or 5672}")
    return urlunsplit(url._replace(path="/" + quote(vhost, safe="")))


@dataclass
class Imported:
    vhost: str
    users: dict[str, str]  # name in definitions.json -> throwaway name


@pytest.fixture(scope="module")
async def scratch() -> AsyncIterator[tuple[list[str], list[str]]]:
    """Vhosts and users to delete at the end, whatever happened."""
    vhosts: list[str] = []
    users: list[str] = []
    try:
        yield vhosts, users
    finally:
        # Not checked: a setup that failed half-way has not made all of them.
        for vhost in vhosts:
            await rabbitmqctl("delete_vhost", vhost, check=False)
        for user in users:
            await rabbitmqctl("delete_user", user, check=False)


@pytest.fixture(scope="module")
async def imported(scratch: tuple[list[str], list[str]]) -> Imported:
    definitions = json.loads(DEFINITIONS.read_text())
    renamed, vhosts, users = throwaway_copy(definitions, uuid.uuid4().hex[:8])
    assert list(vhosts) == ["/"], "the file is written for vhost / only (deploy/README.md)"
    scratch[0].extend(vhosts.values())
    scratch[1].extend(users.values())
    # On standard input (no path; 3.10 rejects "-"): rabbitmqctl may run as another
    # user (rabbitmq), who cannot read our temporary files.
    await rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(renamed))
    return Imported(vhosts["/"], users)


@pytest.fixture(scope="module")
async def declared(scratch: tuple[list[str], list[str]]) -> str:
    """A throwaway vhost holding what the code declares, with the default settings."""
    vhost = f"deploycheck-{uuid.uuid4().hex[:8]}-declared"
    scratch[0].append(vhost)
    await rabbitmqctl("add_vhost", vhost)
    await rabbitmqctl("set_permissions", "-p", vhost, urlsplit(AMQP_URL).username, *[".*"] * 3)
    await declare_topology(url_for(vhost))
    return vhost


async def declare_topology(url: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await amqp.declare_topology(
            channel,
            NAMES,
            max_length=DEFAULTS["queue_max_length"],
            retry_delays=DEFAULTS["retry_delays_s"],
        )
    finally:
        await connection.close()


# AMQP integer types: a definitions import stores every integer as `long`, a client the
# smallest type that holds it (`short` for 5000); RabbitMQ compares them as numbers.
INTEGER_TYPES = {"byte", "unsignedbyte", "short", "unsignedshort", "signedint", "unsignedint"}


def comparable(argument: list[Any]) -> list[Any]:
    """A [key, type, value] triple of rabbitmqctl's listing, integer types as one (so an
    integer given as a string still differs)."""
    key, kind, value = argument
    return [key, "long" if kind in INTEGER_TYPES else kind, value]


async def listing(vhost: str) -> dict[str, Any]:
    """What the broker holds in `vhost`, in a form that compares."""

    async def rows(command: str, *columns: str) -> list[dict[str, Any]]:
        found = json.loads(await rabbitmqctl(command, "-p", vhost, *columns, "--formatter", "json"))
        for row in found:
            row["arguments"] = sorted(comparable(argument) for argument in row["arguments"])
        return found

    queues = await rows("list_queues", "name", "type", "durable", "auto_delete", "arguments")
    exchanges = await rows(
        "list_exchanges", "name", "type", "durable", "auto_delete", "internal", "arguments"
    )
    bindings = await rows(
        "list_bindings",
        "source_name",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
    )
    return {
        "queues": {row.pop("name"): row for row in queues},
        "exchanges": {row.pop("name"): row for row in exchanges},
        "bindings": sorted(json.dumps(row, sort_keys=True) for row in bindings),
    }


async def test_the_import_holds_exactly_the_topology_the_code_declares(
    imported: Imported, declared: str
) -> None:
    from_file, from_code = await listing(imported.vhost), await listing(declared)
    assert set(from_code["queues"]) == set(NAMES.all_queues(DEFAULTS["retry_delays_s"]))
    assert set(NAMES.exchanges) <= set(from_code["exchanges"])
    assert from_file["queues"] == from_code["queues"]
    assert from_file["exchanges"] == from_code["exchanges"]
    assert from_file["bindings"] == from_code["bindings"]


async def login(imported: Imported, user: str) -> str:
    """The URL of the imported `user` on the imported vhost, with a password set now
    (the file ships the users without one)."""
    name, password = imported.users[user], secrets.token_hex(16)
    await rabbitmqctl("change_password", name, password)
    return url_for(imported.vhost, (name, password))


async def test_the_worker_user_redeclares_the_code_topology_over_the_import(
    imported: Imported,
) -> None:
    """PRECONDITION_FAILED (an argument that differs), ACCESS_REFUSED (a name outside the
    worker's permissions) or NOT_FOUND would raise here."""
    await declare_topology(await login(imported, WORKER_USER))


async def test_the_gateway_user_finds_the_imported_exchanges(imported: Imported) -> None:
    connection = await aio_pika.connect(await login(imported, GATEWAY_USER))
    try:
        found = await amqp.find_exchanges(await connection.channel(), NAMES)
        assert set(found) == set(NAMES.exchanges)
    finally:
        await connection.close()
