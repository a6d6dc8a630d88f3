"""What `kubectl lora` prints: tables in kubectl's style (upper-case headers, columns padded,
`-` for nothing), from the controller's JSON. Pure: JSON in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JSON = dict[str, Any]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    cells = [list(header), *[[c if c else "-" for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _clean(text: str) -> str:
    """One line: control characters (a hostile pod's message) and runs of spaces flattened."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def adapter_state(row: JSON) -> str:
    placed, confirmed = set(row["placed"]), set(row["confirmed"])
    if row["failures"] or row["failedPods"]:
        return "Partial" if confirmed else "Failed"
    if not placed:
        return "Unplaced"
    if placed <= confirmed:
        return "Ready"
    return "Lazy" if row["lazy"] else "Loading"


def why_not(row: JSON) -> str:
    reasons = [f"{f['pod']}: {f['reason']}" for f in row["failedPods"]]
    reasons += [f for f in row["failures"] if not any(f.endswith(r) for r in reasons)]
    return _clean("; ".join(reasons))


def status(rows: Sequence[JSON], crs: Sequence[JSON], *, wide: bool, all_namespaces: bool) -> str:
    """Per adapter: where it is confirmed and why not elsewhere; resources without adapters
    (a source that cannot be read) get one line with their reason."""
    header = ["LORAADAPTER", "ADAPTER", "STATE", "CONFIRMED", "WHY NOT ELSEWHERE"]
    if wide:
        header[4:4] = ["PLACED", "VERSION", "BASE MODEL"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    out = []
    with_rows = {(r["namespace"], r["loraAdapter"]) for r in rows}
    for r in rows:
        line = [r["loraAdapter"], r["name"], adapter_state(r), ",".join(r["confirmed"])]
        if wide:
            line += [",".join(r["placed"]), r["version"][:12], r["baseModel"]]
        line.append(why_not(r))
        out.append(([r["namespace"]] if all_namespaces else []) + line)
    for c in crs:
        if (c["namespace"], c["name"]) in with_rows:
            continue
        reasons = [f"{f['name']}: {f['reason']}" for f in c["failedAdapters"]] or [
            f"{k['reason']}: {k['message']}" for k in c["conditions"] if k["status"] != "True"]
        line = [c["name"], "", c["phase"] or "Pending", ""]
        if wide:
            line += ["", "", c["baseModel"]]
        line.append(_clean("; ".join(reasons)) or "no adapter selected yet")
        out.append(([c["namespace"]] if all_namespaces else []) + line)
    return table(header, out) if out else "No adapters found."


def why(w: JSON) -> str:
    needs = w["needs"]
    replicas = "every eligible pod" if needs["replicas"] is None else f"{needs['replicas']} replicas"
    lines = [
        f"Adapter {w['adapter']} of LoraAdapter {w['namespace']}/{w['loraAdapter']} "
        f"(base model {w['baseModel']}, version {w['version'][:12]}{', lazy' if w['lazy'] else ''})",
        f"Verdict:   {_clean(w['verdict'])}",
        f"Needs:     {needs['memoryText']} of memory, rank {needs['rank'] or 'unknown'}, {replicas}, "
        f"priority {needs['priority']} ({needs['preemptionPolicy']}), "
        f"podSelector {needs['podSelector'] or '(every pod of the base model)'}",
        f"Placed:    {', '.join(w['placed']) or '-'}",
        f"Confirmed: {', '.join(w['confirmed']) or '-'}",
    ]
    lines += [f"Scheduler: {_clean(r)}" for r in sorted(set(w["shortfall"]))]
    if w["preempted"]:
        lines.append(f"Preempted: {_clean(w['preempted'])}")
    lines += [f"Failed:    pod {f['pod']}: {_clean(f['reason'])}" for f in w["failedPods"]]
    lines += ["", "Eligible pods (serve its base model, match its podSelector, Ready, rank allowed):"]
    eligible = [[p["name"], f"{p['freeSlots']}/{p['slots']}",
                 f"{p['freeMemoryText']}" if p["freeMemory"] is not None else "unknown",
                 str(p["maxLoraRank"]),
                 "confirmed" if p["confirmed"] else "placed" if p["placed"] else ""]
                for p in w["eligiblePods"]]
    lines.append(table(["POD", "FREE SLOTS", "FREE MEMORY", "MAX RANK", "HAS IT"], eligible)
                 if eligible else "  none")
    if w["otherPods"]:
        lines += ["", "Other pods of the namespace:",
                  table(["POD", "WHY NOT"], [[p["name"], _clean(p["why"])] for p in w["otherPods"]])]
    return "\n".join(lines)


def plan(answer: JSON) -> str:
    blocks = []
    for ns in answer["namespaces"]:
        head = (f"Namespace {ns['namespace']}: {ns['loads']} load(s), {ns['unloads']} unload(s), "
                f"{ns['preemptions']} preemption(s) if {', '.join(ns['loraAdapters'])} "
                f"were applied (nothing was applied).")
        rows = []
        for p in ns["pods"]:
            rows += [[p["pod"], "reload" if a["reload"] else "load", a["adapter"], a["loraAdapter"],
                      ""] for a in p["loads"]]
            rows += [[p["pod"], "unload", a["adapter"], a["loraAdapter"] or "", ""]
                     for a in p["unloads"]]
            rows += [[p["pod"], "preempt", a["adapter"], a["loraAdapter"],
                      f"priority {a['priority']}, by {a['by']['loraAdapter']}/{a['by']['adapter']} "
                      f"(priority {a['by']['priority']})"] for a in p["preemptions"]]
        lines = [head, table(["POD", "ACTION", "ADAPTER", "LORAADAPTER", "NOTE"], rows)
                 if rows else "No load, unload or preemption."]
        if ns["unplaced"]:
            lines += ["Cannot be placed:"] + [
                f"  {u['loraAdapter']}/{u['adapter']}: {_clean(u['message'])}" for u in ns["unplaced"]]
        lines += [f"Moved: {_clean(m['message'])}" for m in ns.get("moves", [])]
        lines += [f"Conflict: {c['loraAdapter']}: {_clean(c['message'])}" for c in ns["conflicts"]]
        lines += [f"Source problem: {s['loraAdapter']}: {s['reason']}: {_clean(s['message'])}"
                  for s in ns["sourceProblems"]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
