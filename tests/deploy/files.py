"""The deploy/ files and what the code says they must agree with."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
# The names Settings reads (pydantic-settings: prefix + field name; no aliases are used).
SETTINGS_ENV = {
    f"{Settings.model_config['env_prefix']}{name}".upper() for name in Settings.model_fields
}


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes manifest under deploy/k8s (not kustomization.yaml), by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def unknown_settings(names: Iterable[str]) -> set[str]:
    """The environment variable names among `names` that no Settings field reads: the
    service ignores them silently (extra="ignore"), so a typo would change nothing."""
    return set(names) - SETTINGS_ENV
