"""kubernetes_asyncio's configuration loading and HTTP client, imported without the rest of it.

Importing any module of kubernetes_asyncio first runs its package `__init__`, which imports every
generated API class and model: 33 MiB of the controller's resident memory (VmRSS of
`python -c "import lora_controller.kube.client"` before and after), of which the controller uses
nothing. It uses `Configuration`, `ApiClient.call_api` (raw JSON, `_preload_content=False`) and the
kubeconfig and in-cluster loaders. So the packages `kubernetes_asyncio`, `kubernetes_asyncio.client`
and `kubernetes_asyncio.client.models` are registered without running their `__init__`, and only
the modules named here are imported. Nothing is lost to other code of the same process: the first
use of any other name of those packages runs their real `__init__` (a PEP 562 `__getattr__`), so
`from kubernetes_asyncio import client; client.CoreV1Api` still works. When kubernetes_asyncio was
imported in full before this module, it is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

_PACKAGES = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")


def _register_lean(name: str) -> None:
    """Put package `name` in sys.modules with its `__init__` not run (run on first other use)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an installed package")
    module = importlib.util.module_from_spec(spec)
    state = {"complete": False}

    def complete(attr: str) -> Any:
        if state["complete"]:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if not attr.startswith("__") and importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        state["complete"] = True
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, attr)

    module.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _lean_import() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    for name in _PACKAGES:
        _register_lean(name)
    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
    api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
    client = sys.modules["kubernetes_asyncio.client"]
    for attr, value in (("Configuration", configuration.Configuration),
                        ("ApiClient", api_client.ApiClient)):
        if attr not in vars(client):  # what the loaders import from the package
            setattr(client, attr, value)
    return (configuration, api_client,
            importlib.import_module("kubernetes_asyncio.config.kube_config"),
            importlib.import_module("kubernetes_asyncio.config.incluster_config"))


if TYPE_CHECKING:
    from kubernetes_asyncio.client.api_client import ApiClient
    from kubernetes_asyncio.client.configuration import Configuration
    from kubernetes_asyncio.config.incluster_config import load_incluster_config
    from kubernetes_asyncio.config.kube_config import load_kube_config
else:
    _configuration, _api_client, _kube_config, _incluster_config = _lean_import()
    Configuration = _configuration.Configuration
    ApiClient = _api_client.ApiClient
    load_kube_config = _kube_config.load_kube_config
    load_incluster_config = _incluster_config.load_incluster_config

__all__ = ["ApiClient", "Configuration", "load_incluster_config", "load_kube_config"]
