"""The informer cache: objects keyed `namespace/name`, with named indexes (client-go's Indexer).

Everything runs on one asyncio loop and no method awaits, so each operation is atomic with respect
to other tasks: no lock is needed to keep the objects and the indexes consistent.
Objects in the store are shared: callers must treat them as read-only.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lora_controller.kube.resources import object_key

JSON = dict[str, Any]
IndexFunc = Callable[[JSON], Iterable[str]]

NAMESPACE_INDEX = "namespace"


def namespace_index(obj: JSON) -> list[str]:
    ns = obj.get("metadata", {}).get("namespace")
    return [ns] if ns else []


def label_index(label: str) -> IndexFunc:
    """An index of objects by the value of one label (objects without it are not indexed)."""

    def index(obj: JSON) -> list[str]:
        value = (obj.get("metadata", {}).get("labels") or {}).get(label)
        return [value] if value is not None else []

    return index


def labels_index(obj: JSON) -> list[str]:
    """An index of objects by every `key=value` label pair they carry."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return [f"{k}={v}" for k, v in labels.items()]


class Store:
    """A keyed cache of API objects with secondary indexes."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, JSON] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self._index_values: dict[str, dict[str, builtins.list[str]]] = {NAMESPACE_INDEX: {}}
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Add an index; existing objects are indexed at once."""
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already exists")
        self._indexers[name] = fn
        self._indices[name] = {}
        self._index_values[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    # -- reads --------------------------------------------------------------------------------
    def get(self, key: str) -> JSON | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def list(self) -> builtins.list[JSON]:
        return list(self._items.values())

    def items(self) -> Iterator[tuple[str, JSON]]:
        return iter(list(self._items.items()))

    def by_index(self, index: str, value: str) -> builtins.list[JSON]:
        keys = self._indices[index].get(value, ())
        return [self._items[k] for k in sorted(keys)]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._indices[index].get(value, ()))

    def index_values(self, index: str) -> builtins.list[str]:
        return sorted(v for v, keys in self._indices[index].items() if keys)

    # -- writes -------------------------------------------------------------------------------
    def upsert(self, obj: JSON) -> JSON | None:
        """Store an object; returns the one it replaced, if any."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key)
        self._items[key] = obj
        for name in self._indexers:
            self._index_one(name, key, obj)
        return old

    def delete(self, key: str) -> JSON | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key)
        return old

    def replace(self, objects: Iterable[JSON]) -> tuple[builtins.list[JSON], builtins.list[tuple[JSON, JSON]], builtins.list[JSON]]:
        """Replace the whole content (a relist): returns (added, updated (old, new), deleted)."""
        added: builtins.list[JSON] = []
        updated: builtins.list[tuple[JSON, JSON]] = []
        seen: set[str] = set()
        for obj in objects:
            key = object_key(obj)
            seen.add(key)
            old = self.upsert(obj)
            if old is None:
                added.append(obj)
            else:
                updated.append((old, obj))
        deleted = [self.delete(k) for k in [k for k in self._items if k not in seen]]
        return added, updated, [d for d in deleted if d is not None]

    # -- index bookkeeping ---------------------------------------------------------------------
    def _index_one(self, name: str, key: str, obj: JSON) -> None:
        values = list(dict.fromkeys(self._indexers[name](obj)))
        self._index_values[name][key] = values
        index = self._indices[name]
        for value in values:
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str) -> None:
        for name, per_key in self._index_values.items():
            index = self._indices[name]
            for value in per_key.pop(key, ()):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
