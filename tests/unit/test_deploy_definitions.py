"""deploy/rabbitmq/definitions.json pre-provisions exactly the topology the service
declares (a mismatch would make the service's declarations fail, PRECONDITION_FAILED),
and least-privilege broker users whose permissions keep commands private (SPEC §5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.events import COMMANDS, is_command
from service.amqp import QUEUE_BINDINGS, Names, queue_specs
from service.settings import Settings

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"
DEFAULTS = Settings.model_fields


def expected():
    return queue_specs(
        Names("registrar"),
        max_length=DEFAULTS["queue_max_length"].default,
        retry_delays=DEFAULTS["retry_delays_s"].default,
    )


def test_definitions_declare_every_queue_with_the_same_arguments():
    definitions = json.loads(DEFINITIONS.read_text())
    declared = {q["name"]: q["arguments"] for q in definitions["queues"]}
    assert declared == {spec.name: spec.arguments for spec in expected()}
    assert all(q["durable"] for q in definitions["queues"])


def test_definitions_bind_the_same_routing_keys():
    definitions = json.loads(DEFINITIONS.read_text())
    bound = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    wanted = {(exchange, spec.name, key) for spec in expected() for exchange, key in spec.bindings}
    assert bound == wanted


def test_definitions_declare_the_three_durable_topic_exchanges():
    definitions = json.loads(DEFINITIONS.read_text())
    exchanges = {(e["name"], e["type"], e["durable"]) for e in definitions["exchanges"]}
    assert exchanges == {
        ("registrar.commands", "topic", True),
        ("registrar.events", "topic", True),
        ("registrar.dlx", "topic", True),
    }


def test_work_queues_are_bound_to_commands_only():
    definitions = json.loads(DEFINITIONS.read_text())
    sources = {b["source"] for b in definitions["bindings"] if not b["destination"].endswith("dlq")}
    assert sources == {"registrar.commands"}
    for spec in expected():
        assert all(exchange != "registrar.events" for exchange, _key in spec.bindings)


def test_every_dead_lettering_queue_is_a_quorum_queue_that_dead_letters_at_least_once():
    """At-most-once (the default) drops a message whose dead-lettering fails; at-least-once
    only works on quorum queues and only with reject-publish (else it falls back)."""
    definitions = json.loads(DEFINITIONS.read_text())
    for source in (
        {q["name"]: q["arguments"] for q in definitions["queues"]},
        {spec.name: spec.arguments for spec in expected()},
    ):
        dead_lettering = {name: a for name, a in source.items() if "x-dead-letter-exchange" in a}
        # the three work queues and every retry queue
        assert len(dead_lettering) == 3 + 3 * len(DEFAULTS["retry_delays_s"].default)
        for name, arguments in dead_lettering.items():
            assert arguments["x-queue-type"] == "quorum", name
            assert arguments["x-dead-letter-strategy"] == "at-least-once", name
            assert arguments["x-overflow"] == "reject-publish", name
        assert all(a["x-queue-type"] == "quorum" for a in source.values())


def test_retry_queues_dead_letter_into_their_work_queue_after_their_delay():
    definitions = json.loads(DEFINITIONS.read_text())
    declared = {q["name"]: q["arguments"] for q in definitions["queues"]}
    names = Names("registrar")
    for role in ("registration", "invitation", "mailer"):
        for delay in DEFAULTS["retry_delays_s"].default:
            arguments = declared[names.retry_queue(role, delay)]
            assert arguments["x-message-ttl"] == round(delay * 1000)
            assert arguments["x-dead-letter-exchange"] == ""
            assert arguments["x-dead-letter-routing-key"] == names.queue(role)


def permissions() -> dict[str, dict[str, str]]:
    definitions = json.loads(DEFINITIONS.read_text())
    return {p["user"]: p for p in definitions["permissions"] if p["vhost"] == "/"}


def allows(user: str, what: str, resource: str) -> bool:
    """RabbitMQ matches a permission regex against the resource name (unanchored search)."""
    return re.search(permissions()[user][what], resource) is not None


NAMES = Names("registrar")
QUEUES = [spec.name for spec in expected()]
CONSUMER_QUEUE = "consumer.billing"


def test_the_least_privilege_users_exist_without_a_usable_password():
    """Passwords are set per installation (`rabbitmqctl change_password`), never shipped."""
    users = {u["name"]: u for u in json.loads(DEFINITIONS.read_text())["users"]}
    for name in ("registrar-gateway", "registrar-worker", "consumer"):
        assert users[name]["password_hash"] == "", name
        assert users[name]["tags"] == [], name
        assert name in permissions()


def test_the_gateway_may_only_write_commands():
    assert allows("registrar-gateway", "write", NAMES.commands)
    for resource in (NAMES.events, NAMES.dead_letters, "amq.default", *QUEUES):
        assert not allows("registrar-gateway", "write", resource), resource
    for resource in (*NAMES.exchanges, *QUEUES):
        assert not allows("registrar-gateway", "read", resource), resource
        assert not allows("registrar-gateway", "configure", resource), resource


def test_the_worker_declares_reads_its_queues_and_writes_commands_events_and_retries():
    for resource in (*NAMES.exchanges, *QUEUES):
        assert allows("registrar-worker", "configure", resource), resource
    for resource in (NAMES.commands, NAMES.events, "amq.default"):
        assert allows("registrar-worker", "write", resource), resource
    for spec in expected():  # binding needs write on the queue and read on the exchange
        assert allows("registrar-worker", "read", spec.name), spec.name
        assert allows("registrar-worker", "write", spec.name), spec.name
        for exchange, _key in spec.bindings:
            assert allows("registrar-worker", "read", exchange), spec.name
    # It never reads the public exchange (nothing there is for it) nor others' queues.
    assert not allows("registrar-worker", "read", NAMES.events)
    for what in ("configure", "write", "read"):
        assert not allows("registrar-worker", what, CONSUMER_QUEUE)


def test_a_consumer_binds_its_own_queues_to_events_and_cannot_touch_commands():
    for what in ("configure", "write", "read"):
        assert allows("consumer", what, CONSUMER_QUEUE)
    assert allows("consumer", "read", NAMES.events)  # to bind its queue to events
    for what in ("configure", "write", "read"):
        # no write: cannot publish commands; no read: cannot bind a queue to them
        assert not allows("consumer", what, NAMES.commands), what
        for queue in QUEUES:
            assert not allows("consumer", what, queue), (what, queue)
    for resource in (NAMES.events, NAMES.dead_letters, "amq.default"):
        assert not allows("consumer", "write", resource), resource


def test_every_routing_key_a_work_queue_consumes_is_a_command():
    """Work queues bind to `{prefix}.commands`: a key they consume must be published there."""
    for role, keys in QUEUE_BINDINGS.items():
        for key in keys:
            assert is_command(key), (role, key)
    assert {key for keys in QUEUE_BINDINGS.values() for key in keys} == COMMANDS
