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
