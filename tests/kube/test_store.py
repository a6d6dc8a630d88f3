"""Store and indexes: keyed objects, index maintenance on update/delete, relist deltas."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lora_controller.kube.store import NAMESPACE_INDEX, Store, label_index, labels_index


def pod(ns: str, name: str, rv: str = "1", **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv, "labels": labels}}


def test_upsert_get_delete_and_namespace_index() -> None:
    store = Store()
    assert store.upsert(pod("a", "p1")) is None
    store.upsert(pod("b", "p2"))
    assert store.get("a/p1") is not None and len(store) == 2
    assert [o["metadata"]["name"] for o in store.by_index(NAMESPACE_INDEX, "a")] == ["p1"]
    old = store.delete("a/p1")
    assert old is not None and old["metadata"]["name"] == "p1"
    assert store.by_index(NAMESPACE_INDEX, "a") == []
    assert store.delete("a/p1") is None


def test_label_index_follows_label_changes() -> None:
    store = Store({"model": label_index("model"), "labels": labels_index})
    store.upsert(pod("ns", "p", model="llama"))
    assert store.index_keys("model", "llama") == ["ns/p"]
    store.upsert(pod("ns", "p", "2", model="mistral"))
    assert store.index_keys("model", "llama") == []
    assert store.index_keys("model", "mistral") == ["ns/p"]
    assert store.index_keys("labels", "model=mistral") == ["ns/p"]
    assert store.index_values("model") == ["mistral"]


def test_indexer_added_later_indexes_existing_objects() -> None:
    store = Store()
    store.upsert(pod("ns", "p", tier="gold"))
    store.add_indexer("tier", label_index("tier"))
    assert store.index_keys("tier", "gold") == ["ns/p"]


def test_replace_reports_added_updated_and_vanished_with_last_known_object() -> None:
    store = Store()
    store.upsert(pod("ns", "keep", "1"))
    store.upsert(pod("ns", "gone", "7", x="last"))
    added, updated, deleted = store.replace([pod("ns", "keep", "2"), pod("ns", "new", "3")])
    assert [o["metadata"]["name"] for o in added] == ["new"]
    assert [(o["metadata"]["resourceVersion"], n["metadata"]["resourceVersion"]) for o, n in updated] == [("1", "2")]
    assert deleted == [pod("ns", "gone", "7", x="last")]
    assert sorted(store.keys()) == ["ns/keep", "ns/new"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "del"]), st.sampled_from("abcde"),
                          st.sampled_from(["x", "y", "z"])), max_size=60))
def test_indexes_always_match_a_recomputation(ops: list[tuple[str, str, str]]) -> None:
    store = Store({"l": label_index("l")})
    model: dict[str, str] = {}
    for op, name, value in ops:
        if op == "up":
            store.upsert(pod("ns", name, l=value))
            model[f"ns/{name}"] = value
        else:
            store.delete(f"ns/{name}")
            model.pop(f"ns/{name}", None)
    for value in ["x", "y", "z"]:
        assert store.index_keys("l", value) == sorted(k for k, v in model.items() if v == value)
    assert sorted(store.keys()) == sorted(model)
