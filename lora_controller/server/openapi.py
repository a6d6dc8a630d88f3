"""The OpenAPI 3.0 document of the router API and the fleet API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

_NAMESPACE = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "maxLength": 63}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$", "maxLength": 253}

_ERROR = {
    "description": "An error with a reason",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


_NOT_MODIFIED = {"description": "Not modified: the ETag given in If-None-Match is current"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 512}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_NULLABLE_INT = {"type": "integer", "nullable": True}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _array(schema: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}


def _not_found(*reasons: str) -> dict[str, Any]:
    """404: the reasons of this path, and NamespaceNotServed, which every path that names a
    namespace may answer when the controller serves only some namespaces (--namespace)."""
    listed = ", ".join([*reasons, "NamespaceNotServed"])
    return {**_ERROR, "description": f"Not found; reason one of {listed}. NamespaceNotServed: "
            "the namespace is not one this controller serves (its --namespace), whether or not "
            "the object exists there"}


def _ok(schema: str) -> dict[str, Any]:
    return {"description": "OK",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_S, _I, _B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_NS = {"type": "string", "nullable": True}
FLEET_SCHEMAS: dict[str, Any] = {
    "FleetLoraAdapter": _object(
        ["namespace", "name", "baseModel", "phase", "loadedCount", "desiredCount", "failedCount",
         "failedAdapters", "conditions"],
        namespace=_S, name=_S, baseModel=_S, generation=_I, deleting=_B,
        replicas=_NULLABLE_INT, lazy=_B, priority=_I, phase=_NS, observedGeneration=_NULLABLE_INT,
        loadedCount=_I, desiredCount=_I, failedCount=_I, truncated=_B,
        failedAdapters={"type": "array", "items": _object(["name", "reason"], name=_S, reason=_S)},
        conditions={"type": "array", "items": _object(
            ["type", "status", "reason"], type=_S, status=_S, reason=_S, message=_S,
            lastTransitionTime=_S)}),
    "FleetPod": _object(
        ["namespace", "name", "ready", "slots", "slotsUsed", "memoryUsed"],
        namespace=_S, name=_S, ready=_B, observed=_B, observedAt=_NS, error=_NS,
        baseModels=_STRINGS, slots=_I, slotsUsed=_I, activeSlots=_I, maxLoraRank=_I,
        memoryCapacity=_NULLABLE_INT, memoryUsed=_I, unusable=_NS, listed=_I),
    "FleetEvent": _object(["at", "namespace", "resource", "type", "reason", "note"],
                          at=_NS, namespace=_S, resource=_S, type=_S, reason=_S, note=_S),
    "FleetAction": _object(["at", "namespace", "pod", "adapter", "verb", "ok", "reason"],
                           at=_NS, namespace=_S, pod=_S, adapter=_S, verb=_S, ok=_B, reason=_S,
                           message=_S),
    "Fleet": _object(
        ["synced", "leader", "namespaces", "baseModels", "loraAdapters", "pods", "events",
         "actions"],
        synced=_B, leader=_B, namespaces=_STRINGS, baseModels=_STRINGS,
        loraAdapters=_array("FleetLoraAdapter"), pods=_array("FleetPod"),
        events=_array("FleetEvent"), actions=_array("FleetAction")),
    "FailedPod": _object(["pod", "reason"], pod=_S, reason=_S),
    "AdapterRow": _object(
        ["name", "namespace", "loraAdapter", "baseModel", "version", "lazy", "placed",
         "confirmed", "failedPods", "failures"],
        name=_S, namespace=_S, loraAdapter=_S, baseModel=_S, version=_S, lazy=_B,
        placed=_STRINGS, confirmed=_STRINGS, failedPods=_array("FailedPod"), failures=_STRINGS),
    "AdapterPage": _object(["total", "offset", "limit", "adapters"], total=_I, offset=_I,
                           limit=_I, adapters=_array("AdapterRow")),
    "Why": _object(
        ["adapter", "namespace", "loraAdapter", "needs", "verdict", "eligiblePods", "otherPods"],
        adapter=_S, namespace=_S, loraAdapter=_S, baseModel=_S, version=_S, lazy=_B,
        placed=_STRINGS, confirmed=_STRINGS, failedPods=_array("FailedPod"), failures=_STRINGS,
        needs=_object(["memory", "priority"], memory=_I, memoryText=_S, rank=_NULLABLE_INT,
                      replicas=_NULLABLE_INT, priority=_I, preemptionPolicy=_S, podSelector=_NS),
        shortfall=_STRINGS, preempted=_NS, verdict=_S,
        eligiblePods={"type": "array", "items": _object(
            ["name", "slots", "freeSlots"], name=_S, ready=_B, slots=_I, freeSlots=_I,
            memoryCapacity=_NULLABLE_INT, freeMemory=_NULLABLE_INT, freeMemoryText=_NS,
            maxLoraRank=_I, placed=_B, confirmed=_B)},
        otherPods={"type": "array", "items": _object(["name", "why"], name=_S, why=_S)}),
    "PlanPod": _object(
        ["pod", "loads", "unloads", "preemptions"], pod=_S,
        loads={"type": "array", "items": _object(["adapter", "loraAdapter"], adapter=_S,
                                                  loraAdapter=_S, path=_S, reload=_B)},
        unloads={"type": "array", "items": _object(["adapter"], adapter=_S, loraAdapter=_NS)},
        preemptions={"type": "array", "items": _object(
            ["adapter", "loraAdapter", "by"], adapter=_S, loraAdapter=_S, priority=_I,
            by=_object(["adapter", "loraAdapter"], adapter=_S, loraAdapter=_S, priority=_I),
            message=_S)}),
    "NamespacePlan": _object(
        ["namespace", "pods", "loads", "unloads", "preemptions", "unplaced"],
        namespace=_S, loraAdapters=_STRINGS, pods=_array("PlanPod"), loads=_I, unloads=_I,
        preemptions=_I,
        unplaced={"type": "array", "items": _object(
            ["adapter", "loraAdapter", "reasons", "message"], adapter=_S, loraAdapter=_S,
            wanted=_NULLABLE_INT, placed=_I, reasons=_STRINGS, message=_S)},
        moves={"type": "array", "items": {"type": "object"}},
        conflicts={"type": "array", "items": _object(["loraAdapter", "message"],
                                                      loraAdapter=_S, message=_S)},
        sourceProblems={"type": "array", "items": _object(
            ["loraAdapter", "reason", "message"], loraAdapter=_S, reason=_S, message=_S)},
        placement={"type": "array", "items": _object(
            ["loraAdapter", "adapter", "pods"], loraAdapter=_S, adapter=_S, pods=_STRINGS)}),
    "Plan": _object(["applied", "namespaces"], applied=_B, namespaces=_array("NamespacePlan")),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "lora-controller router API",
        "version": "v1",
        "description": "Which vLLM pods serve which LoRA adapter, as the pods' /v1/models confirm.",
    },
    "paths": {
        "/v1/adapters": {"get": {
            "operationId": "ListAvailableAdapters",
            "summary": "Adapters available for a base model, with the pods that confirmed them.",
            "parameters": [
                {"name": "baseModel", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 512}},
                {"name": "namespace", "in": "query", "required": False, "schema": _NAMESPACE},
            ],
            "responses": {"200": _ok("AdapterList"), "400": _ERROR, "401": _ERROR,
                          "404": _not_found()},
        }},
        "/v1/adapters/{name}/pods": {"get": {
            "operationId": "GetPodsForAdapter",
            "summary": "Pods where the adapter is confirmed loaded; ensure=true loads a lazy one.",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": _NAME},
                {"name": "namespace", "in": "query", "required": False, "schema": _NAMESPACE},
                {"name": "ensure", "in": "query", "required": False,
                 "schema": {"type": "boolean", "default": False}},
            ],
            "responses": {"200": _ok("AdapterPods"), "400": _ERROR, "401": _ERROR,
                          "404": _not_found("AdapterNotFound"), "409": _ERROR, "503": _ERROR},
        }},
        "/v1/pods/{namespace}/{name}/adapters": {"get": {
            "operationId": "GetPodAdapters",
            "summary": "Adapters a pod reports on /v1/models, and those placed on it.",
            "parameters": [
                {"name": "namespace", "in": "path", "required": True, "schema": _NAMESPACE},
                {"name": "name", "in": "path", "required": True, "schema": _NAME},
            ],
            "responses": {"200": _ok("PodAdapters"), "400": _ERROR, "401": _ERROR,
                          "404": _not_found("PodNotFound")},
        }},
        "/v1/loraadapters/{namespace}/{name}": {"get": {
            "operationId": "GetAdapterStatus",
            "summary": "A LoraAdapter's adapters with placed and confirmed pods, and its status.",
            "parameters": [
                {"name": "namespace", "in": "path", "required": True, "schema": _NAMESPACE},
                {"name": "name", "in": "path", "required": True, "schema": _NAME},
            ],
            "responses": {"200": _ok("AdapterStatus"), "400": _ERROR, "401": _ERROR,
                          "404": _not_found("LoraAdapterNotFound")},
        }},
        "/v1/usage": {"post": {
            "operationId": "ReportUsage",
            "summary": "A router reports the requests it routed to each adapter of a namespace in "
                       "its last window; demand-scaled adapters (scaling.mode Demand) follow it.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/UsageReport"}}}},
            "responses": {
                "202": _ok("UsageAccepted"), "400": _ERROR, "401": _ERROR,
                "404": _not_found("NamespaceNotServed"),
                "413": {"description": "TooManyAdapters: at most 1000 adapters per report",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
                "415": _ERROR,
                "503": {"description": "NotLeader: only the leader takes reports; send it to "
                        "the leader (Retry-After, the leader's URL in the message)",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }},
        "/v1/fleet": {"get": {
            "operationId": "GetFleet",
            "summary": "LoraAdapters, pods with capacity and use, recent Events and loads/unloads "
                       "(what the placement view at / shows).",
            "parameters": [{"name": "namespace", "in": "query", "required": False,
                            "schema": _NAMESPACE}],
            "responses": {"200": _ok("Fleet"), "304": _NOT_MODIFIED, "400": _ERROR,
                          "401": _ERROR, "404": _not_found()},
        }},
        "/v1/fleet/adapters": {"get": {
            "operationId": "ListFleetAdapters",
            "summary": "One page of adapters with the pods each is placed, confirmed and failed "
                       "on (the rows of the adapters x pods matrix, kubectl lora status).",
            "parameters": [
                {"name": "namespace", "in": "query", "required": False, "schema": _NAMESPACE},
                {"name": "baseModel", "in": "query", "required": False, "schema": _TEXT},
                {"name": "loraAdapter", "in": "query", "required": False, "schema": _NAME},
                {"name": "search", "in": "query", "required": False, "schema": _TEXT,
                 "description": "a part of the adapter's name, any case"},
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": 10_000_000}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            ],
            "responses": {"200": _ok("AdapterPage"), "304": _NOT_MODIFIED, "400": _ERROR,
                          "401": _ERROR, "404": _not_found()},
        }},
        "/v1/adapters/{name}/why": {"get": {
            "operationId": "ExplainAdapter",
            "summary": "Why an adapter is (not) placed: the scheduler's reasons, its needs, the "
                       "pods it may use with their free capacity, why others are ruled out.",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": _NAME},
                {"name": "namespace", "in": "query", "required": False, "schema": _NAMESPACE},
            ],
            "responses": {"200": _ok("Why"), "304": _NOT_MODIFIED, "400": _ERROR, "401": _ERROR,
                          "404": _not_found("AdapterNotFound"), "409": _ERROR},
        }},
        "/v1/plan": {"post": {
            "operationId": "PlanLoraAdapters",
            "summary": "Dry run: the loads, unloads and preemptions per pod, and what cannot be "
                       "placed, that applying these LoraAdapters would cause. Nothing is applied.",
            "description": "The body is one LoraAdapter, or a List (kind List or LoraAdapterList) "
                           f"of at most 100, as JSON, at most {1024 * 1024} bytes. Objects "
                           "without metadata.namespace take ?namespace=. The token must come in "
                           "a header (the view's cookie opens reads only).",
            "parameters": [{"name": "namespace", "in": "query", "required": False,
                            "schema": _NAMESPACE}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "a LoraAdapter, or {kind: List, items: [...]}"}}}},
            "responses": {
                "200": _ok("Plan"), "400": _ERROR, "401": _ERROR, "404": _not_found(),
                "413": _ERROR, "415": _ERROR,
                "422": {**_ERROR, "description": "InvalidLoraAdapter: a spec the API refuses"},
                "429": _ERROR, "503": _ERROR, "504": _ERROR},
        }},
        "/healthz": {"get": {"operationId": "Healthz", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"operationId": "Readyz", "responses": {
            "200": {"description": "caches synced"}, "503": _ERROR}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["reason", "message"],
                "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}}}},
            "Pod": {"type": "object",
                    "required": ["name", "namespace", "ip", "port", "baseUrl", "observedAt"],
                    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                   "ip": {"type": "string", "nullable": True},
                                   "port": {"type": "integer"},
                                   "baseUrl": {"type": "string", "nullable": True},
                                   "ready": {"type": "boolean"},
                                   "observedAt": {
                                       "type": "string", "format": "date-time", "nullable": True,
                                       "description": "When the replica that answers last read "
                                       "the pod's /v1/models (UTC): the answer is as fresh as "
                                       "this, at most one --poll-interval old. Every replica "
                                       "reads the pods itself; null: not read yet"}}},
            "Adapter": {"type": "object",
                        "required": ["name", "namespace", "loraAdapter", "baseModel", "pods"],
                        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                       "loraAdapter": {"type": "string"},
                                       "baseModel": {"type": "string"}, "lazy": {"type": "boolean"},
                                       "pods": {"type": "array",
                                                "items": {"$ref": "#/components/schemas/Pod"}}}},
            "AdapterList": {"type": "object", "required": ["adapters"], "properties": {
                "baseModel": {"type": "string", "nullable": True},
                "adapters": {"type": "array", "items": {"$ref": "#/components/schemas/Adapter"}}}},
            "AdapterPods": {"type": "object", "required": ["adapter", "namespace", "pods"],
                            "properties": {"adapter": {"type": "string"},
                                           "namespace": {"type": "string"},
                                           "loraAdapter": {"type": "string"},
                                           "baseModel": {"type": "string"},
                                           "pods": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/Pod"}}}},
            "PodAdapters": {"type": "object", "required": ["pod", "adapters"], "properties": {
                "pod": {"$ref": "#/components/schemas/Pod"},
                "observed": {"type": "boolean"},
                "error": {"type": "string", "nullable": True},
                "adapters": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "root": {"type": "string", "nullable": True}}}},
                "placed": {"type": "array", "items": {"type": "string"}}}},
            "UsageReport": {
                "type": "object", "required": ["namespace", "windowSeconds", "adapters"],
                "additionalProperties": False,
                "properties": {
                    "namespace": _NAMESPACE,
                    "windowSeconds": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                      "maximum": 3600},
                    "adapters": {"type": "object", "maxProperties": 1000,
                                 "additionalProperties": {"type": "integer", "minimum": 0,
                                                          "maximum": 1_000_000_000},
                                 "description": "adapter name -> requests routed in the window"},
                }},
            "UsageAccepted": {"type": "object", "required": ["accepted", "ignored"], "properties": {
                "accepted": {"type": "integer", "description": "adapters some resource wants"},
                "ignored": {"type": "integer", "description": "adapters no resource wants"}}},
            "AdapterStatus": {"type": "object", "required": ["name", "namespace", "adapters"],
                              "properties": {"name": {"type": "string"},
                                             "namespace": {"type": "string"},
                                             "baseModel": {"type": "string"},
                                             "adapters": {"type": "array",
                                                          "items": {"type": "object"}},
                                             "status": {"type": "object"}}},
            **FLEET_SCHEMAS,
        },
    },
    "security": [{}, {"bearer": []}],
}
