"""`kubectl lora plan -f`: the LoraAdapters of YAML or JSON files, checked as `kubectl apply` would.

Files hold one or more documents (`---`), each a LoraAdapter or a List of objects; other kinds are
skipped with a note on stderr (a plan is about LoraAdapters). Objects without a namespace take the
command's. The API server then checks each one with a server-side apply dry run and strict field
validation: the CRD's schema and CEL rules decide, exactly as they will when the file is applied,
and nothing is stored.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lora_controller.kube.client import ApiError, KubeClient
from lora_controller.kube.resources import LORA_ADAPTERS

JSON = dict[str, Any]
KIND = "LoraAdapter"
FIELD_MANAGER = "kubectl-lora"


class PlanFileError(Exception):
    """A file cannot be read or holds no usable LoraAdapter; or the API server refused one."""


def _documents(name: str) -> list[Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise PlanFileError(f"cannot read {name}: {exc.strerror}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise PlanFileError(f"{name} is not YAML or JSON: {' '.join(str(exc).split())}") from None


def _objects(doc: Any, name: str) -> list[JSON]:
    if not isinstance(doc, dict):
        raise PlanFileError(f"{name} holds a document that is not an object")
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        return [o for item in doc["items"] for o in _objects(item, name)]
    return [doc]


def read_plan_files(names: Sequence[str], namespace: str) -> list[JSON]:
    items: list[JSON] = []
    for name in names:
        for doc in _documents(name):
            for obj in _objects(doc, name):
                if obj.get("kind") != KIND:
                    meta = obj.get("metadata") or {}
                    sys.stderr.write(f"note: {obj.get('kind', 'an object without kind')} "
                                     f"{meta.get('name', '')} in {name} skipped (a plan is about "
                                     f"LoraAdapters)\n")
                    continue
                meta = obj.setdefault("metadata", {})
                if not isinstance(meta, dict):
                    raise PlanFileError(f"a LoraAdapter in {name} has metadata that is not an object")
                meta.setdefault("namespace", namespace)
                items.append(obj)
    if not items:
        raise PlanFileError(f"no LoraAdapter in {', '.join(names)}")
    return items


async def validate(kube: KubeClient, items: Sequence[JSON]) -> None:
    """A server-side apply dry run of each object: the API server's verdict, nothing stored."""
    for obj in items:
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or not name:
            raise PlanFileError("a LoraAdapter has no metadata.name")
        try:
            await kube.request(
                "PATCH", LORA_ADAPTERS.path(namespace=ns, name=name), body=obj,
                content_type="application/apply-patch+yaml",
                query={"dryRun": "All", "fieldManager": FIELD_MANAGER,
                       "fieldValidation": "Strict", "force": True})
        except ApiError as exc:
            if exc.status == 0:
                raise PlanFileError(f"cannot reach the API server to validate: {exc.message} "
                                    f"(--validate=false skips the check)") from None
            raise PlanFileError(f"LoraAdapter {ns}/{name} is refused by the API server: "
                                f"{' '.join(exc.message.split())}") from None
