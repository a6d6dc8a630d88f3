"""The ownership ledger: what this controller put on which pod, kept where it survives a restart.

Adapters staged in the adapter store are recognisably ours by their path, but a local adapter's
path is the user's: once its resource is gone, or its repository changed, nothing on the pod says
who loaded it, and it would be foreign (left alone) for good. So every adapter a pod lists that the
controller owns is recorded, per namespace, in a small JSON file in the adapter store
(`.ownership/<namespace>.json`, written atomically, only when it changes), with its path and its
resource. Ownership (world.py) asks the ledger first; an entry ends when its pod stops listing the
adapter (unloaded, restarted) or the pod is gone. The leader writes it; a replica that becomes the
leader reads it again. With an adapter store that replicas do not share, a new leader starts
without it and falls back to the other ownership rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from lora_controller.reconcile.snapshot import NamespaceSnapshot
from lora_controller.reconcile.world import Ownership

log = structlog.get_logger(__name__)

MAX_BYTES = 32 * 1024 * 1024
FOLDER = ".ownership"


@dataclass(frozen=True)
class Ledger:
    entries: Mapping[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)
    """(pod name, adapter name) -> (root the pod lists, owning resource's name)."""


def after_round(ledger: Ledger, snapshot: NamespaceSnapshot, own: Ownership) -> Ledger:
    """The ledger as the pods' latest reports tell it (pure): what readable pods list and is ours
    is recorded; what they stopped listing, and entries of pods that are gone, are dropped;
    entries of pods that could not be read are kept."""
    entries: dict[tuple[str, str], tuple[str | None, str]] = {
        key: value for key, value in ledger.entries.items()
        if key[0] in snapshot.pods_by_name and not _readable(snapshot, key[0])}
    for pod, adapters in snapshot.readable.items():
        for name, root in adapters.items():
            owner = own.owner(pod, name, root)
            if owner is not None and owner.name:
                entries[(pod.name, name)] = (root, owner.name)
    return Ledger(entries)


def _readable(snapshot: NamespaceSnapshot, pod: str) -> bool:
    obs = snapshot.observed(pod)
    return obs is not None and obs.ok


def _path(store_root: Path, namespace: str) -> Path:
    return store_root / FOLDER / f"{namespace}.json"


def _read(path: Path) -> Ledger:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_BYTES + 1)[:MAX_BYTES])
        return Ledger({(str(e["pod"]), str(e["adapter"])): (e.get("root"), str(e["resource"]))
                       for e in data.get("entries", [])})
    except FileNotFoundError:
        return Ledger()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ownership ledger unreadable; starting without it", path=str(path),
                    error=str(exc)[:200])
        return Ledger()


def _write(path: Path, ledger: Ledger) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"entries": [{"pod": pod, "adapter": name, "root": root, "resource": resource}
                        for (pod, name), (root, resource) in sorted(ledger.entries.items(),
                                                                   key=lambda kv: kv[0])]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def read_ledger(store_root: Path, namespace: str) -> Ledger:
    return await asyncio.to_thread(_read, _path(store_root, namespace))


async def write_ledger(store_root: Path, namespace: str, ledger: Ledger) -> None:
    try:
        await asyncio.to_thread(_write, _path(store_root, namespace), ledger)
    except OSError as exc:
        log.warning("ownership ledger not written", namespace=namespace, error=str(exc)[:200])
