"""deploy/k8s: every manifest validates strictly (unknown fields are errors) against the
Kubernetes OpenAPI schemas kubernetes-validate bundles, the KEDA ones against KEDA's CRD
schemas (vendored in tests/deploy/keda, see SOURCE.md there); and what the manifests say
to registrar (environment variable names, secret keys, worker roles, queue names) is
something registrar reads."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from cli.workers import WORKERS
from service.amqp import QUEUE_BINDINGS, Names
from tests.deploy.files import K8S, manifests, unknown_settings

# The oldest minor the manifests claim (deploy/README.md) and the newest one the
# installed kubernetes-validate knows: an API removed or changed in between shows up.
KUBERNETES_VERSIONS = ("1.30", latest_version())
CRD_SCHEMAS = Path(__file__).with_name("keda")

RESOURCES = [
    (f"{file}:{doc['kind']}/{doc['metadata']['name']}", doc)
    for file, docs in manifests().items()
    for doc in docs
]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _where, doc in RESOURCES if doc["kind"] == kind]


def crd_schema_path(resource: dict[str, Any]) -> Path:
    """Named like kubernetes-validate's own files: kind-group-version.json."""
    group, _, version = resource["apiVersion"].rpartition("/")  # core kinds: no group
    return CRD_SCHEMAS / f"{resource['kind'].lower()}-{group.split('.')[0]}-{version}.json"


def is_custom(resource: dict[str, Any]) -> bool:
    return crd_schema_path(resource).exists()


def forbid_unknown_fields(schema: Any) -> Any:
    """What kubernetes-validate's strict schemas do: an object with declared properties
    takes no others (maps such as labels declare none, so they stay open)."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            forbid_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            forbid_unknown_fields(value)
    return schema


@cache
def crd_validator(path: Path) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(forbid_unknown_fields(json.loads(path.read_text())))


def validate_custom(resource: dict[str, Any]) -> None:
    crd_validator(crd_schema_path(resource)).validate(resource)


BUILT_IN = [(where, doc) for where, doc in RESOURCES if not is_custom(doc)]
CUSTOM = [(where, doc) for where, doc in RESOURCES if is_custom(doc)]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("resource", [doc for _w, doc in BUILT_IN], ids=[w for w, _d in BUILT_IN])
def test_built_in_kinds_validate_strictly(resource: dict[str, Any], version: str) -> None:
    # SchemaNotFoundError here means a kind that is neither built in nor vendored.
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("resource", [doc for _w, doc in CUSTOM], ids=[w for w, _d in CUSTOM])
def test_keda_resources_validate_strictly_against_the_keda_crd_schemas(
    resource: dict[str, Any],
) -> None:
    validate_custom(resource)


def test_the_keda_resources_are_checked_at_all() -> None:
    kinds = {doc["kind"] for _where, doc in CUSTOM}
    assert kinds == {"ScaledObject", "TriggerAuthentication"}


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The checks above are not vacuous: a typo in either kind of resource fails."""
    deployment = copy.deepcopy(by_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["envFromm"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="envFromm"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)

    scaled = copy.deepcopy(by_kind("ScaledObject")[0])
    scaled["spec"]["minReplicaCounts"] = 1
    with pytest.raises(jsonschema.ValidationError, match="minReplicaCounts"):
        validate_custom(scaled)
    scaled = copy.deepcopy(by_kind("ScaledObject")[0])
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError, match="scaleTargetRef"):
        validate_custom(scaled)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(manifests())


# --- what the manifests tell registrar ---------------------------------------------


def pod_specs() -> list[dict[str, Any]]:
    return [doc["spec"]["template"]["spec"] for doc in by_kind("Deployment") + by_kind("Job")]


def containers() -> list[dict[str, Any]]:
    return [c for spec in pod_specs() for c in spec.get("initContainers", []) + spec["containers"]]


def secret_key_refs(container: dict[str, Any]) -> list[tuple[str, str]]:
    refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e]
    return [(ref["name"], ref["key"]) for ref in refs]


def test_every_environment_variable_a_container_gets_is_a_setting() -> None:
    """Settings ignores unknown REGISTRAR_* names: a misspelt one would change nothing."""
    for container in containers():
        names = {e["name"] for e in container.get("env", [])}
        assert not unknown_settings(names), container["name"]
    for config_map in by_kind("ConfigMap"):  # every ConfigMap is used with envFrom
        assert not unknown_settings(config_map["data"]), config_map["metadata"]["name"]


def test_every_secret_key_referenced_exists_and_every_secret_key_is_used() -> None:
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in by_kind("Secret")}
    config_maps = {c["metadata"]["name"] for c in by_kind("ConfigMap")}
    used = {ref for container in containers() for ref in secret_key_refs(container)}
    used |= {
        (ref["name"], ref["key"])
        for auth in by_kind("TriggerAuthentication")
        for ref in auth["spec"]["secretTargetRef"]
    }
    for name, key in used:
        assert key in secrets.get(name, ()), (name, key)
    for name, keys in secrets.items():
        assert keys == {key for secret, key in used if secret == name}, f"unused keys in {name}"
    for container in containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, container["name"]


def role_of(deployment: dict[str, Any]) -> tuple[str, ...]:
    return tuple(deployment["spec"]["template"]["spec"]["containers"][0]["args"][:2])


def test_one_deployment_per_worker_and_only_workers_can_unseal() -> None:
    roles = [role_of(d) for d in by_kind("Deployment")]
    assert sorted(r for r in roles if r[0] == "worker") == [("worker", w) for w in sorted(WORKERS)]
    assert ("gateway", "--host") in roles
    assert [c["args"] for c in containers() if c["args"][0] == "migrate"] == [["migrate"]]
    for container in containers():
        keys = {key for _secret, key in secret_key_refs(container)}
        unseals = "REGISTRAR_SEAL_PRIVATE_KEY" in keys
        assert unseals == (container["args"][0] == "worker"), container["args"]


def test_keda_scales_each_queue_driven_worker_on_its_own_queue() -> None:
    """keda.yaml spells the queue names out: they must follow the ConfigMap's prefix."""
    (config_map,) = by_kind("ConfigMap")
    names = Names(config_map["data"]["REGISTRAR_AMQP_PREFIX"])
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    scaled_roles = []
    for scaled in by_kind("ScaledObject"):
        _worker, role = role_of(deployments[scaled["spec"]["scaleTargetRef"]["name"]])
        scaled_roles.append(role)
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq"
            assert trigger["metadata"]["queueName"] == names.queue(role)
    assert sorted(scaled_roles) == sorted(QUEUE_BINDINGS)
