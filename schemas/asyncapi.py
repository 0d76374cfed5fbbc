"""The AsyncAPI 3 document of registrar's public events, built from schemas.events.

Commands are internal (they travel on `{prefix}.commands`, which no outside system may
read or write) and may change between versions, so they are not documented here.

`python -m schemas.asyncapi > schemas/asyncapi.json` regenerates the committed file; a
test fails when the file and the event models disagree.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.events import CONTENT_TYPE, EVENTS, PUBLIC_EVENTS


def _channel_id(routing_key: str) -> str:
    head, *rest = routing_key.replace("-", ".").split(".")
    return head + "".join(part.capitalize() for part in rest)


def build_asyncapi() -> dict[str, Any]:
    public = {key: entry for key, entry in EVENTS.items() if key in PUBLIC_EVENTS}
    models = [model for _, model in public.values()]
    _, defs = models_json_schema(
        [(model, "serialization") for model in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for routing_key, (event_type, model) in public.items():
        channel = _channel_id(routing_key)
        name = model.__name__
        messages[name] = {
            "name": name,
            "title": event_type,
            "contentType": CONTENT_TYPE,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name,
            "payload": {
                "type": "object",
                "description": "CloudEvents 1.0 structured-mode envelope",
                "required": ["specversion", "id", "source", "type", "time", "data"],
                "properties": {
                    "specversion": {"const": "1.0"},
                    "id": {
                        "type": "string",
                        "format": "uuid",
                        "description": "also the AMQP message_id; the deduplication key",
                    },
                    "source": {"type": "string"},
                    "type": {"const": event_type},
                    "subject": {"type": "string"},
                    "time": {"type": "string", "format": "date-time"},
                    "datacontenttype": {"const": "application/json"},
                    "data": {"$ref": f"#/components/schemas/{name}"},
                },
            },
            "bindings": {"amqp": {"deliveryMode": 2, "messageType": event_type}},
        }
        channels[channel] = {
            "address": routing_key,
            "description": f"routing key {routing_key} on the topic exchange {{prefix}}.events",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": "registrar.events",
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                }
            },
        }
        operations[f"send{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "registrar events",
            "version": "0.1.0",
            "description": "Published with publisher confirms, persistent, at least once; "
            "bind your own queue to the exchange with the routing keys you need.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {"host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs["$defs"]},
    }


def render() -> str:
    return json.dumps(build_asyncapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
