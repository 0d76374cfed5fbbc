"""deploy/rabbitmq/definitions.json pre-provisions exactly the topology the service
declares; a mismatch would make the service's declarations fail (PRECONDITION_FAILED)."""

from __future__ import annotations

import json
from pathlib import Path

from service.amqp import Names, queue_specs
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


def test_definitions_declare_both_durable_topic_exchanges():
    definitions = json.loads(DEFINITIONS.read_text())
    exchanges = {(e["name"], e["type"], e["durable"]) for e in definitions["exchanges"]}
    assert exchanges == {("registrar.events", "topic", True), ("registrar.dlx", "topic", True)}


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
