"""What happened lately: the last load and unload outcomes and the last Events, for people.

Bounded ring buffers (the newest `size` of each), filled by the leader as it acts and read by the
placement view and `kubectl lora`. They are not a log: a restart empties them, and a standby,
which does nothing, has none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lora_controller.reconcile.executing import Outcome
from lora_controller.reconcile.planning import Load


@dataclass(frozen=True)
class ActionRecord:
    at: datetime
    namespace: str
    pod: str
    adapter: str
    verb: str  # load | unload
    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class EventRecord:
    at: datetime
    namespace: str
    resource: str
    type: str  # Normal | Warning
    reason: str
    note: str


class History:
    def __init__(self, *, size: int = 200) -> None:
        self._actions: deque[ActionRecord] = deque(maxlen=size)
        self._events: deque[EventRecord] = deque(maxlen=size)

    def outcomes(self, outcomes: Sequence[Outcome], at: datetime) -> None:
        for o in outcomes:
            self._actions.append(ActionRecord(
                at=at, namespace=o.action.pod.namespace, pod=o.action.pod.name,
                adapter=o.action.name, verb="load" if isinstance(o.action, Load) else "unload",
                ok=o.ok, reason=o.reason or ("Loaded" if isinstance(o.action, Load) else
                                             "Unloaded"), message=o.message))

    def event(self, record: EventRecord) -> None:
        self._events.append(record)

    def actions(self, namespace: str | None = None, limit: int = 100) -> list[ActionRecord]:
        """The newest first."""
        return [a for a in reversed(self._actions) if namespace in (None, a.namespace)][:limit]

    def events(self, namespace: str | None = None, limit: int = 100) -> list[EventRecord]:
        """The newest first."""
        return [e for e in reversed(self._events) if namespace in (None, e.namespace)][:limit]
