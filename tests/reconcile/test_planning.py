"""The pure planner: desired placement vs what pods report -> load/unload actions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lora_controller.reconcile.planning import (
    DesiredAdapter,
    Load,
    Unload,
    apply_actions,
    plan,
)

STORE = "/store"


def managed(pod: str, name: str, root: str | None) -> str | None:
    return "ns/cr" if root is not None and root.startswith(STORE) else None


def want(name: str, version: str = "v1", lazy: bool = False) -> DesiredAdapter:
    return DesiredAdapter(name, f"{STORE}/ns/cr/{name}/{version}", "ns/cr", lazy)


def test_missing_adapters_are_loaded_and_extra_ours_unloaded() -> None:
    p = plan(desired={"p1": {"a": want("a"), "b": want("b")}},
             observed={"p1": {"b": f"{STORE}/ns/cr/b/v1", "old": f"{STORE}/ns/cr/old/v1"}},
             managed=managed)
    assert p.actions == (Load("p1", "a", f"{STORE}/ns/cr/a/v1", "ns/cr"),
                         Unload("p1", "old", "ns/cr"))


def test_new_version_is_reloaded_in_place() -> None:
    p = plan(desired={"p1": {"a": want("a", "v2")}},
             observed={"p1": {"a": f"{STORE}/ns/cr/a/v1"}}, managed=managed)
    assert p.actions == (Load("p1", "a", f"{STORE}/ns/cr/a/v2", "ns/cr", inplace=True),)


def test_foreign_adapters_are_never_touched_and_a_name_clash_is_a_conflict() -> None:
    p = plan(desired={"p1": {"a": want("a")}},
             observed={"p1": {"a": "/elsewhere/a", "startup": "/models/startup"}}, managed=managed)
    assert p.actions == ()
    assert [(c.pod, c.name, c.foreign_root) for c in p.conflicts] == [("p1", "a", "/elsewhere/a")]


def test_protected_startup_adapters_are_never_unloaded_or_reloaded() -> None:
    p = plan(desired={"p1": {}}, observed={"p1": {"s": f"{STORE}/ns/cr/s/v1"}}, managed=managed,
             protected={"p1": frozenset({"s"})})
    assert p.actions == ()


def test_lazy_adapters_are_not_loaded_but_kept_when_loaded() -> None:
    p = plan(desired={"p1": {"lazy": want("lazy", lazy=True), "lazy2": want("lazy2", lazy=True)}},
             observed={"p1": {"lazy2": f"{STORE}/ns/cr/lazy2/v1"}}, managed=managed)
    assert p.actions == ()


def test_unobserved_pods_get_no_action() -> None:
    p = plan(desired={"p1": {"a": want("a")}, "p2": {"a": want("a")}},
             observed={"p1": {}}, managed=managed)
    assert [a.pod for a in p.actions] == ["p1"]


names = st.sampled_from(["a", "b", "c", "d"])
versions = st.sampled_from(["v1", "v2"])


@settings(max_examples=300, deadline=None)
@given(
    desired=st.dictionaries(st.sampled_from(["p1", "p2", "p3"]),
                            st.dictionaries(names, st.tuples(versions, st.booleans()))),
    observed=st.dictionaries(st.sampled_from(["p1", "p2", "p3"]),
                             st.dictionaries(st.sampled_from(["a", "b", "c", "d", "x"]),
                                             st.sampled_from(["v1", "v2", "foreign"]))),
)
def test_replanning_after_success_yields_nothing(
    desired: dict[str, dict[str, tuple[str, bool]]], observed: dict[str, dict[str, str]]
) -> None:
    want_map = {pod: {n: want(n, v, lazy) for n, (v, lazy) in adapters.items()}
                for pod, adapters in desired.items()}
    seen = {pod: {n: ("/foreign/" + n if v == "foreign" else f"{STORE}/ns/cr/{n}/{v}")
                  for n, v in adapters.items()} for pod, adapters in observed.items()}
    first = plan(desired=want_map, observed=seen, managed=managed)
    after = apply_actions(seen, first.actions)
    second = plan(desired=want_map, observed=after, managed=managed)
    assert second.actions == ()
    # Every non-lazy desired adapter is then listed with its path, unless a foreign one holds the name.
    for pod, adapters in want_map.items():
        if pod not in seen:
            continue
        for name, adapter in adapters.items():
            listed = after[pod].get(name)
            if listed is not None and listed.startswith("/foreign/"):
                continue
            if not adapter.lazy:
                assert listed == adapter.path
        # Ours and unwanted are gone; foreign ones stay.
        for name, root in after[pod].items():
            assert name in adapters or (root or "").startswith("/foreign/")
