"""Pure selection: naming candidates, filtering by pattern/prefix/adapters, de-duplicating, capping.

The rules (docs/sources.md): `pattern` is a shell glob on adapter names, `prefix` a name prefix and
`adapters` an explicit list; they combine as a conjunction and none of them selects everything.
A name must be usable as a vLLM `lora_name` and as one folder name; nested folders are named by
their path with '/' replaced by '-'. The first `maxAdapters` by sorted name are kept.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lora_controller.api.types import ADAPTER_NAME_MAX, ADAPTER_NAME_RE, AdapterSource
from lora_controller.sources.errors import (
    ADAPTER_NOT_FOUND,
    DUPLICATE_ADAPTER_NAME,
    INVALID_ADAPTER_NAME,
    AdapterError,
)
from lora_controller.sources.model import Candidate

_NAME = re.compile(ADAPTER_NAME_RE)


def adapter_name(candidate: Candidate) -> str:
    """The adapter's name: the root's name, or its relative folder path joined with '-'."""
    if not candidate.segments:
        return candidate.root_name
    return "-".join(candidate.segments)


def name_problem(name: str, segments: Sequence[str] = ()) -> str | None:
    """Why `name` (from folder `segments`) cannot be an adapter name, or None when it can."""
    if any(s in ("", ".", "..") for s in segments):
        return "its folder path has an empty, '.' or '..' segment and would escape its folder"
    if len(name) > ADAPTER_NAME_MAX:
        return f"it is longer than {ADAPTER_NAME_MAX} characters"
    if not _NAME.match(name):
        return ("it must start with a letter or digit and contain only letters, digits, "
                "'.', '_' or '-'")
    return None


def is_selected(name: str, source: AdapterSource) -> bool:
    """True when `name` passes every selector given (a conjunction)."""
    if source.pattern is not None and not fnmatch.fnmatchcase(name, source.pattern):
        return False
    if source.prefix is not None and not name.startswith(source.prefix):
        return False
    return source.adapters is None or name in source.adapters


@dataclass(frozen=True)
class Selection:
    """Candidates kept (named, sorted, capped), problems found, and how many matched."""

    chosen: tuple[tuple[str, Candidate], ...]
    errors: tuple[AdapterError, ...]
    capped: bool
    total_found: int


def select(candidates: Sequence[Candidate], source: AdapterSource) -> Selection:
    """Name, filter, de-duplicate and cap `candidates` (pure)."""
    by_name: dict[str, list[Candidate]] = {}
    for cand in candidates:
        name = adapter_name(cand)
        if is_selected(name, source):
            by_name.setdefault(name, []).append(cand)
    errors: list[AdapterError] = []
    usable: list[tuple[str, Candidate]] = []
    for name in sorted(by_name):
        group = by_name[name]
        if len(group) > 1:
            where = ", ".join(sorted(c.location for c in group))
            errors.append(AdapterError(
                name=name, reason=DUPLICATE_ADAPTER_NAME,
                message=f"{len(group)} folders are named {name!r} ({where}); rename one of them "
                f"or narrow the selection", location=group[0].location,
            ))
            continue
        cand = group[0]
        problem = name_problem(name, cand.segments)
        if problem:
            errors.append(AdapterError(
                name=name, reason=INVALID_ADAPTER_NAME,
                message=f"adapter at {cand.location} cannot be named {name!r}: {problem}",
                location=cand.location,
            ))
            continue
        usable.append((name, cand))
    if source.adapters is not None:
        for wanted in sorted(set(source.adapters) - set(by_name)):
            if (source.pattern is None or fnmatch.fnmatchcase(wanted, source.pattern)) and (
                source.prefix is None or wanted.startswith(source.prefix)
            ):
                message = "not found in the source: no folder with adapter_config.json has this name"
            else:
                message = "listed in adapters but excluded by pattern or prefix"
            errors.append(AdapterError(name=wanted, reason=ADAPTER_NOT_FOUND, message=message))
    total = len(usable)
    chosen = usable[: source.max_adapters]
    return Selection(
        chosen=tuple(chosen), errors=tuple(errors), capped=total > len(chosen), total_found=total
    )


def describe_selectors(source: AdapterSource) -> str:
    """Human words for the selectors in use, for messages."""
    parts = []
    if source.pattern is not None:
        parts.append(f"pattern {source.pattern!r}")
    if source.prefix is not None:
        parts.append(f"prefix {source.prefix!r}")
    if source.adapters is not None:
        shown = ", ".join(source.adapters[:5]) + (", ..." if len(source.adapters) > 5 else "")
        parts.append(f"adapters [{shown}]")
    return " and ".join(parts) if parts else "no selector"
