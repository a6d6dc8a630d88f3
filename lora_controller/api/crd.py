"""Build the LoraAdapter CustomResourceDefinition from the pydantic models.

pydantic's JSON Schema is turned into a Kubernetes structural schema: references inlined,
`X | None` collapsed to X (an absent field is how Kubernetes says "unset"), titles dropped,
descriptions, defaults, bounds and CEL rules kept. `hack/gen-crd` writes the result to crds/, and a
test checks that the committed file is exactly what this module produces.
"""

from __future__ import annotations

from typing import Any

import yaml

from lora_controller.api.types import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    LoraAdapterSpec,
    LoraAdapterStatus,
)

_KEEP = {
    "type", "description", "default", "enum", "pattern", "minimum", "maximum", "minLength",
    "maxLength", "minItems", "maxItems", "maxProperties", "items", "properties", "required",
    "additionalProperties", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "format", "x-kubernetes-int-or-string",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $ref, collapse Optional, drop what a structural schema does not take."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if node.get("x-kubernetes-int-or-string"):
        # int | str: Kubernetes' own marker says it, and the API server validates the field as
        # an integer or a string whatever `type` says. `type: string` is what Kubernetes' own
        # OpenAPI v2 says of a Quantity or an IntOrString, and what kubectl explain prints
        # (without a type it prints <Object>).
        node.pop("anyOf", None)
        node["type"] = "string"
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {variants}")
        inner = _resolve(variants[0], defs)
        node = {**inner, **node}
        if node.get("default", 0) is None:
            del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "default" in out and out["default"] is None:
        del out["default"]  # absent is how Kubernetes says unset
    return out


def model_schema(model: type[Any], *, keep_defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    if not keep_defaults:
        _strip_defaults(schema)
    return schema


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for value in node.values():
            _strip_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _strip_defaults(value)


def crd() -> dict[str, Any]:
    """The CRD object, ready to apply."""
    spec_schema = model_schema(LoraAdapterSpec)
    status_schema = model_schema(LoraAdapterStatus, keep_defaults=False)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["vllm"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Base Model", "type": "string", "jsonPath": ".spec.baseModel"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredCount",
                         "priority": 1},
                        {"name": "Loaded", "type": "integer", "jsonPath": ".status.loadedCount"},
                        {"name": "Failed", "type": "integer", "jsonPath": ".status.failedCount"},
                        # Why it is not Ready, in one word (SourceNotFound, CredentialsMissing,
                        # Partial, ...): a source that fails as a whole has no adapter to count.
                        {"name": "Reason", "type": "string",
                         "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "LoraAdapter declares LoRA adapters for a base model: "
                            "where they come from, which vLLM pods may serve them and how they "
                            "compete for capacity. The controller discovers, places, loads and "
                            "keeps them, and reports what the pods confirm.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": {**spec_schema, "description": spec_schema.get(
                                    "description", "")},
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated by hack/gen-crd from lora_controller/api/types.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)
