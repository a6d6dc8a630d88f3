"""The OpenAPI 3.0 document of the router API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

_NAMESPACE = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "maxLength": 63}
_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$", "maxLength": 253}

_ERROR = {
    "description": "An error with a reason",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


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
            "Pod": {"type": "object", "required": ["name", "namespace", "ip", "port", "baseUrl"],
                    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                   "ip": {"type": "string", "nullable": True},
                                   "port": {"type": "integer"},
                                   "baseUrl": {"type": "string", "nullable": True},
                                   "ready": {"type": "boolean"}}},
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
            "AdapterStatus": {"type": "object", "required": ["name", "namespace", "adapters"],
                              "properties": {"name": {"type": "string"},
                                             "namespace": {"type": "string"},
                                             "baseModel": {"type": "string"},
                                             "adapters": {"type": "array",
                                                          "items": {"type": "object"}},
                                             "status": {"type": "object"}}},
        },
    },
    "security": [{}, {"bearer": []}],
}
