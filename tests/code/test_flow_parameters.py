"""The flows' parameters are typed: each deployment's parameter schema, as a real Prefect
server stores it, has no free-form object (the UI renders a form, not a JSON box)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def untyped(schema: dict[str, Any], defs: dict[str, Any], where: str) -> list[str]:
    """Places in ``schema`` that accept anything: an object with neither properties nor a
    typed ``additionalProperties``, or a value with no type at all."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return untyped(defs[name], defs, f"{where}<{name}>")
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            return [p for i, sub in enumerate(schema[key]) for p in untyped(sub, defs, where)]
    if "enum" in schema or "const" in schema:
        return []
    kind = schema.get("type")
    if kind is None:
        return [where]
    if kind == "object":
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not properties and not isinstance(extra, dict):
            return [where]
        found = [p for n, s in properties.items() for p in untyped(s, defs, f"{where}.{n}")]
        if isinstance(extra, dict):
            found += untyped(extra, defs, f"{where}[*]")
        return found
    if kind == "array":
        return untyped(schema.get("items") or {}, defs, f"{where}[]")
    return []


def deployments() -> list[tuple[str, str]]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return [(d["name"], d["entrypoint"]) for d in spec["deployments"]]


def load_flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    module = "citeops." + path.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), name)


def test_the_checker_finds_a_free_form_object() -> None:
    assert untyped({"type": "object"}, {}, "p") == ["p"]
    assert untyped({"type": "object", "additionalProperties": {"type": "integer"}}, {}, "p") == []
    defs = {"X": {"type": "object", "properties": {"a": {}}}}
    assert untyped({"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]}, defs, "p") == ["p<X>.a"]


@pytest.mark.integration
def test_every_deployment_parameter_is_typed(prefect_harness) -> None:
    from prefect.client.orchestration import get_client

    problems = []
    with get_client(sync_client=True) as client:
        for name, entrypoint in deployments():
            flow = load_flow(entrypoint)
            deployment_id = flow.to_deployment(name=name).apply()
            stored = client.read_deployment(deployment_id).parameter_openapi_schema
            defs = stored.get("definitions") or stored.get("$defs") or {}
            for parameter, schema in (stored.get("properties") or {}).items():
                problems += untyped(schema, defs, f"{name}:{parameter}")
    assert not problems, "free-form parameters: " + ", ".join(problems)
