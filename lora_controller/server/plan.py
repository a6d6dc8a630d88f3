"""`POST /v1/plan`: what applying some LoraAdapters would do, computed and never applied.

The body is one LoraAdapter or a List of them, as JSON (`kubectl lora plan` turns YAML files into
that). It is checked before anything runs: its size, its shape, each object's apiVersion, kind,
name and namespace, its spec against the API's models, and no field the API does not know (a
misspelt field would be dropped by the API server, and a plan that silently ignores it would lie).
The controller's dry run (reconcile/dryrun.py, the same discover, select, place and plan stages as
a reconcile) answers per namespace: loads, unloads and preemptions per pod, what cannot be placed
and why, name conflicts and sources that cannot be read.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from lora_controller.api.types import API_VERSION, KIND, LoraAdapter, LoraAdapterSpec, ObjectMeta
from lora_controller.reconcile.dryrun import DryRun
from lora_controller.server.answers import NAMESPACE, ApiProblem

JSON = dict[str, Any]
MAX_BODY = 1024 * 1024
MAX_ITEMS = 100
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LIST_KINDS = ("List", f"{KIND}List")


def _bad(message: str, status: int = 400, reason: str = "InvalidPlan") -> ApiProblem:
    return ApiProblem(status, reason, message)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model inside an annotation such as `X | None` or `list[X]`, whether it is a list)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model, many = _model_of(arg)
            if model is not None:
                return model, many
        return None, False
    if origin is list:
        model, _ = _model_of(typing.get_args(annotation)[0])
        return model, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def unknown_fields(data: Any, model: type[BaseModel], where: str) -> list[str]:
    """Fields of `data` that `model` (and the models inside it) does not declare."""
    if not isinstance(data, Mapping):
        return []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    out: list[str] = []
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            out.append(f"{where}.{key}")
            continue
        inner, many = _model_of(field.annotation)
        if inner is None:
            continue
        for i, item in enumerate(value if many and isinstance(value, list) else [value]):
            out += unknown_fields(item, inner, f"{where}.{key}" + (f"[{i}]" if many else ""))
    return out


def _items(doc: Any) -> list[Any]:
    if not isinstance(doc, dict):
        raise _bad("the body must be a JSON object: a LoraAdapter or a List of LoraAdapters")
    if doc.get("kind") in _LIST_KINDS:
        items = doc.get("items")
        if not isinstance(items, list):
            raise _bad(f"a {doc['kind']} needs an items array")
        return items
    return [doc]


def _adapter(item: Any, where: str, namespace: str | None) -> LoraAdapter:
    if not isinstance(item, dict):
        raise _bad(f"{where} is not an object")
    if item.get("apiVersion") != API_VERSION or item.get("kind") != KIND:
        raise _bad(f"{where} must have apiVersion {API_VERSION} and kind {KIND}; got "
                   f"{str(item.get('apiVersion'))[:80]!r} and {str(item.get('kind'))[:80]!r}")
    meta = item.get("metadata")
    if not isinstance(meta, dict):
        raise _bad(f"{where} needs metadata with a name")
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name):
        raise _bad(f"{where}.metadata.name must be a lowercase DNS subdomain name")
    ns = meta.get("namespace") or namespace
    if not isinstance(ns, str) or not NAMESPACE.match(ns):
        raise _bad(f"{where} ({name}) has no valid namespace: set metadata.namespace or "
                   f"?namespace=")
    if namespace is not None and ns != namespace:
        raise _bad(f"{where} ({name}) is in namespace {ns}, not {namespace} (?namespace=)")
    unknown = unknown_fields(item.get("spec"), LoraAdapterSpec, f"{where}.spec")
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown[:10])}", 422, "InvalidLoraAdapter")
    try:
        spec = LoraAdapterSpec.model_validate(item.get("spec"))
    except ValidationError as exc:
        problems = "; ".join(f"{where}.spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors()[:10])
        raise _bad(problems, 422, "InvalidLoraAdapter") from None
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _bad(f"{where}.metadata.labels must map strings to strings")
    return LoraAdapter(metadata=ObjectMeta(name=name, namespace=ns, labels=labels), spec=spec)


def parse(body: bytes, namespace: str | None) -> dict[str, list[LoraAdapter]]:
    """The body's LoraAdapters by namespace; ApiProblem (4xx) for anything wrong with it."""
    if len(body) > MAX_BODY:
        raise _bad(f"the body is over {MAX_BODY} bytes", 413, "RequestTooLarge")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not JSON: {str(exc)[:200]}") from None
    items = _items(doc)
    if not items:
        raise _bad("no LoraAdapter to plan")
    if len(items) > MAX_ITEMS:
        raise _bad(f"at most {MAX_ITEMS} LoraAdapters per plan, got {len(items)}")
    out: dict[str, list[LoraAdapter]] = {}
    for i, item in enumerate(items):
        cr = _adapter(item, f"items[{i}]" if len(items) > 1 or doc is not item else "body",
                      namespace)
        same = out.setdefault(cr.metadata.namespace, [])
        if any(c.metadata.name == cr.metadata.name for c in same):
            raise _bad(f"LoraAdapter {cr.key} is given twice")
        same.append(cr)
    return out


def as_applied(change: LoraAdapter, live: LoraAdapter | None, now: datetime) -> LoraAdapter:
    """`change` as the API server would store it: a live resource keeps its identity and age (the
    older resource wins an adapter name), a new one is created now."""
    meta = change.metadata.model_copy(update={
        "uid": live.metadata.uid if live else "",
        "creation_timestamp": live.metadata.creation_timestamp if live and
        live.metadata.creation_timestamp else now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generation": live.metadata.generation + 1 if live else 1,
        "finalizers": list(live.metadata.finalizers) if live else [],
    })
    return change.model_copy(update={"metadata": meta})


def _pods(d: DryRun) -> dict[str, JSON]:
    pods: dict[str, JSON] = {}

    def pod(name: str) -> JSON:
        return pods.setdefault(name, {"pod": name, "loads": [], "unloads": [], "preemptions": []})

    for load in d.plan.loads:
        pod(load.pod.name)["loads"].append({"adapter": load.name, "loraAdapter": load.owner.name,
                                            "path": load.path, "reload": load.inplace})
    for unload in d.plan.unloads:
        pod(unload.pod.name)["unloads"].append({
            "adapter": unload.name, "loraAdapter": unload.owner.name if unload.owner else None})
    for p in d.schedule.preemptions:
        pod(str(p.pod))["preemptions"].append({
            "adapter": p.victim.name, "loraAdapter": p.victim.cr, "priority": p.victim_priority,
            "by": {"adapter": p.by.name, "loraAdapter": p.by.cr, "priority": p.by_priority},
            "message": str(p)})
    return dict(sorted(pods.items()))


def plan_json(d: DryRun, changed: list[str]) -> JSON:
    """One namespace's dry run: per pod, then what is short, then the placement of `changed`."""
    pods = _pods(d)
    changed_set = set(changed)
    return {
        "namespace": d.namespace,
        "loraAdapters": sorted(changed),
        "pods": list(pods.values()),
        "loads": len(d.plan.loads), "unloads": len(d.plan.unloads),
        "preemptions": len(d.schedule.preemptions),
        "unplaced": [{"adapter": k.name, "loraAdapter": k.cr, "wanted": s.wanted,
                      "placed": s.placed, "reasons": list(s.reasons), "message": s.message}
                     for k, s in sorted(d.schedule.unplaced.items())],
        "moves": [{"adapter": m.adapter.name, "loraAdapter": m.adapter.cr,
                   "from": str(m.from_pod), "to": str(m.to_pod), "message": str(m)}
                  for m in d.schedule.moves],
        "conflicts": [{"loraAdapter": ref.name, "message": m}
                      for ref, msgs in sorted(d.selection.conflicts.items()) for m in msgs]
        + [{"loraAdapter": c.owner.name, "message": f"pod {c.pod.name} already serves an adapter "
            f"named {c.name} that this controller did not load; it is left alone"}
           for c in d.plan.conflicts],
        "sourceProblems": [{"loraAdapter": ref.name, "reason": st.problem.reason,
                            "message": st.problem.message}
                           for ref, st in sorted(d.discoveries.items()) if st.problem],
        "placement": [{"loraAdapter": k.cr, "adapter": k.name, "pods": list(pods_)}
                      for k, pods_ in sorted(d.schedule.placement.items()) if k.cr in changed_set],
    }
