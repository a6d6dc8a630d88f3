"""Planning: desired placement versus what the pods report, turned into load and unload actions (pure).

Rules, in words:
- An adapter desired on a pod and not listed by its `/v1/models` is loaded (unless it is lazy:
  `loadOnStartup: false` adapters are loaded only when a router asks for them).
- An adapter listed with another `root` than the desired path is a new version: reloaded in place,
  but only when the listed one is ours (managed). A foreign adapter with the same name is never
  overwritten: that is a conflict the status reports.
- An adapter listed on a pod, managed by us and no longer desired there, is unloaded. Foreign
  adapters (loaded by `--lora-modules` at start-up, or by hand) are never unloaded.
- Pods whose `/v1/models` has not been read yet get no action: without the truth, no move.
Planning again after every action succeeded yields no action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lora_controller.reconcile.refs import CrRef, PodRef


@dataclass(frozen=True, order=True)
class DesiredAdapter:
    """One adapter wanted on one pod."""

    name: str
    path: str
    owner: CrRef
    lazy: bool = False


@dataclass(frozen=True, order=True)
class Load:
    pod: PodRef
    name: str
    path: str
    owner: CrRef
    inplace: bool = False


@dataclass(frozen=True, order=True)
class Unload:
    pod: PodRef
    name: str
    owner: CrRef | None


Action = Load | Unload


@dataclass(frozen=True)
class Conflict:
    """A desired adapter name taken on a pod by an adapter that is not ours."""

    pod: PodRef
    name: str
    owner: CrRef
    foreign_root: str | None


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    conflicts: tuple[Conflict, ...]

    @property
    def loads(self) -> list[Load]:
        return [a for a in self.actions if isinstance(a, Load)]

    @property
    def unloads(self) -> list[Unload]:
        return [a for a in self.actions if isinstance(a, Unload)]


ManagedFn = Callable[[PodRef, str, str | None], CrRef | None]
"""(pod key, adapter name, listed root) -> the owner if the adapter is ours, else None."""


def plan(
    *,
    desired: Mapping[PodRef, Mapping[str, DesiredAdapter]],
    observed: Mapping[PodRef, Mapping[str, str | None]],
    managed: ManagedFn,
    protected: Mapping[PodRef, frozenset[str]] | None = None,
) -> Plan:
    """Actions that make `observed` (pod -> adapter name -> root) match `desired` (pod -> name -> adapter).

    `protected` lists per pod the adapter names that must never be touched (its `--lora-modules`).
    Only pods present in `observed` get actions.
    """
    protected = protected or {}
    actions: list[Action] = []
    conflicts: list[Conflict] = []
    for pod in sorted(observed):
        have = observed[pod]
        want = desired.get(pod, {})
        keep_out = protected.get(pod, frozenset())
        for name in sorted(want):
            adapter = want[name]
            if name not in have:
                if not adapter.lazy and name not in keep_out:
                    actions.append(Load(pod, name, adapter.path, adapter.owner))
                continue
            root = have[name]
            if root == adapter.path:
                continue
            owner = managed(pod, name, root)
            if owner is not None and name not in keep_out:
                # Loaded (lazy or not) with an old version: reload in place.
                actions.append(Load(pod, name, adapter.path, adapter.owner, inplace=True))
            else:
                conflicts.append(Conflict(pod, name, adapter.owner, root))
        for name in sorted(have):
            if name in want or name in keep_out:
                continue
            owner = managed(pod, name, have[name])
            if owner is not None:
                actions.append(Unload(pod, name, owner))
    return Plan(tuple(actions), tuple(conflicts))


MAX_ACTIONS_PER_POD = 64
"""Actions sent to one pod in one round; the rest wait for the next (a pod that lists thousands of
adapters to unload must not take a reconcile hostage)."""


def bounded(actions: Sequence[Action], per_pod: int = MAX_ACTIONS_PER_POD) -> list[Action]:
    """At most `per_pod` actions per pod, unloads first (they free room), in plan order."""
    taken: dict[PodRef, int] = {}
    out: list[Action] = []
    for action in sorted(actions, key=lambda a: not isinstance(a, Unload)):
        if taken.get(action.pod, 0) < per_pod:
            taken[action.pod] = taken.get(action.pod, 0) + 1
            out.append(action)
    return out


def apply_actions(
    observed: Mapping[PodRef, Mapping[str, str | None]], actions: tuple[Action, ...] | list[Action]
) -> dict[PodRef, dict[str, str | None]]:
    """What the pods would report after every action succeeded (for tests and dry runs)."""
    after = {pod: dict(adapters) for pod, adapters in observed.items()}
    for action in actions:
        pod = after.setdefault(action.pod, {})
        if isinstance(action, Load):
            pod[action.name] = action.path
        else:
            pod.pop(action.name, None)
    return after
