"""The Kubernetes resource kinds the controller reads and writes, and their URL paths."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from lora_controller.api.types import GROUP, KIND, PLURAL, VERSION


@dataclass(frozen=True)
class ResourceKind:
    """A resource type: enough to build its REST paths and to label metrics."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None = None, name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = ResourceKind("", "v1", "pods", "Pod")
SECRETS = ResourceKind("", "v1", "secrets", "Secret")
NAMESPACES = ResourceKind("", "v1", "namespaces", "Namespace", namespaced=False)
LEASES = ResourceKind("coordination.k8s.io", "v1", "leases", "Lease")
EVENTS = ResourceKind("events.k8s.io", "v1", "events", "Event")
LORA_ADAPTERS = ResourceKind(GROUP, VERSION, PLURAL, KIND)


def object_key(obj: dict[str, object]) -> str:
    """`namespace/name` (or `name` for cluster-scoped objects), as client-go's MetaNamespaceKeyFunc."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("object without metadata")
    ns = meta.get("namespace")
    name = str(meta.get("name", ""))
    return f"{ns}/{name}" if ns else name

