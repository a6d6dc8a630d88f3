"""Replay harness for the recorded vLLM 0.32 exchanges (`shared/vllm-conformance/`) against the simulator.

Generic on purpose: it reads the groups' server flags from the recordings' README (common argv plus
each group's extra env and flags), builds the fixtures with the recordings' own `make_fixtures.py`
(numpy backend) under /tmp (vLLM's message sanitiser only hides paths under /tmp and the like),
substitutes `{MODEL}`/`{ADAPTERS}`, sends each request byte for byte as the recorder did (Python's
`http.client`), and compares after the README's normalisation rules. Unknown group names get the
common argv with runtime updating on, plus what their name says (`max-loras-N`, `runtime-off`).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LOCAL_COPY = Path(__file__).resolve().parent / "conformance"
ENV_VAR = "LORA_VLLM_CONFORMANCE_DIR"
RUNTIME_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
VOLATILE = "<volatile>"
DEFAULT_COMMON_ARGV = (
    "python -m vllm.entrypoints.openai.api_server --model {MODEL} --port <port> --host 127.0.0.1 "
    "--enable-lora --max-loras 2 --max-lora-rank 8 --dtype float32 --max-model-len 256 --max-num-seqs 4"
)


def conformance_dir() -> Path:
    """The recordings: $LORA_VLLM_CONFORMANCE_DIR, else `<repo>/../shared/vllm-conformance`, else the copy here."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    shared = REPO.parent / "shared" / "vllm-conformance"
    if (shared / "recorded.jsonl").is_file():
        return shared
    return LOCAL_COPY


def load_exchanges(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Recorded exchanges by group, each group in `seq` order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(directory / "recorded.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                groups[item["group"]].append(item)
    for items in groups.values():
        items.sort(key=lambda x: x["seq"])
    return dict(groups)


@dataclass
class GroupSetup:
    """How the recording server of a group was started."""

    env: dict[str, str] = field(default_factory=dict)
    extra_flags: list[str] = field(default_factory=list)
    fixtures: str = "numpy"


def _readme(directory: Path) -> str:
    for candidate in (directory / "README.md", LOCAL_COPY / "README.md"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return ""


def common_argv(readme: str) -> list[str]:
    """The argv common to all groups, from the README (`argv: \\`...\\``)."""
    found = re.search(r"argv:\s*`([^`]+)`", readme)
    text = found.group(1) if found else DEFAULT_COMMON_ARGV
    return shlex.split(" ".join(text.split()))


def group_setups(readme: str) -> dict[str, GroupSetup]:
    """Each group's extra env and flags, from the README's scenario table."""
    setups: dict[str, GroupSetup] = {}
    for row in re.finditer(r"^\|\s*`([\w.-]+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|", readme, re.MULTILINE):
        name, env_cell, flags_cell, fixtures_cell = row.groups()
        env = dict(re.findall(r"`?(\w+)=([^\s`]+)`?", env_cell))
        first = re.search(r"`([^`]*)`", flags_cell)  # the flags; later spans are commentary
        flags_text = first.group(1) if first else ""
        setups[name] = GroupSetup(env=env, extra_flags=shlex.split(flags_text), fixtures=fixtures_cell.strip())
    return setups


def setup_for(group: str, setups: dict[str, GroupSetup]) -> GroupSetup:
    """A group's setup; unknown groups are guessed from their name (runtime on unless it says off)."""
    if group in setups:
        return setups[group]
    guess = GroupSetup()
    if not re.search(r"runtime-(off|disabled)|no-runtime", group):
        guess.env[RUNTIME_ENV] = "True"
    max_loras = re.search(r"max-loras-(\d+)", group)
    if max_loras:
        guess.extra_flags += ["--max-loras", max_loras.group(1), "--max-cpu-loras", max_loras.group(1)]
    else:
        guess.extra_flags += ["--max-cpu-loras", "3"]
    rank = re.search(r"max-lora-rank-(\d+)", group)
    if rank:
        guess.extra_flags += ["--max-lora-rank", rank.group(1)]
    return guess


def common_env(readme: str) -> dict[str, str]:
    """The environment common to all groups, from the README (`environment: A=1 B=2` in backquotes)."""
    found = re.search(r"environment:\s*`([^`]+)`", readme)
    return dict(re.findall(r"(\w+)=(\S+)", found.group(1))) if found else {}


def server_setup(group: str, *, model_dir: str, directory: Path) -> tuple[list[str], dict[str, str]]:
    """Flags (after the module name, without --host/--port) and environment of `group`'s server."""
    readme = _readme(directory)
    setup = setup_for(group, group_setups(readme))
    flags: list[str] = []
    skip = 0
    for item in common_argv(readme):
        if skip:
            skip -= 1
            continue
        if item in ("python", "python3", "-m") or item.startswith("vllm.entrypoints"):
            continue
        if item in ("--port", "--host"):
            skip = 1
            continue
        flags.append(item.replace("{MODEL}", model_dir))
    return [*flags, *setup.extra_flags], {**common_env(readme), **setup.env}


def simulator_argv(group: str, *, model_dir: str, directory: Path) -> tuple[list[str], dict[str, str]]:
    """`lora-vllm-sim` argv and env equivalent to the recording server of `group` (no --host/--port)."""
    argv, env = server_setup(group, model_dir=model_dir, directory=directory)
    if RUNTIME_ENV not in env:
        argv.append("--no-runtime-lora-updating")  # vLLM's default with the variable unset
    common = common_env(_readme(directory))
    return argv, {k: v for k, v in env.items() if k not in common}  # the group's own, as before


def build_fixtures(directory: Path) -> Path:
    """Run the recordings' make_fixtures.py (numpy backend) into a fresh directory under /tmp."""
    script = directory / "make_fixtures.py"
    if not script.is_file():
        script = LOCAL_COPY / "make_fixtures.py"
    root = Path(tempfile.mkdtemp(prefix="lora_vllm_conf_", dir="/tmp")) / "fixtures" / "numpy"
    subprocess.run([sys.executable, str(script), str(root)], check=True, capture_output=True, timeout=300)
    return root


# ---------------------------------------------------------------------------- sending
@dataclass
class Answer:
    """What came back, in the recordings' terms."""

    status: int
    content_type: str | None
    text: str


def substitute(value: Any, mapping: dict[str, str]) -> Any:
    """Replace placeholders in every string of a JSON value."""
    if isinstance(value, str):
        for key, real in mapping.items():
            value = value.replace(key, real)
        return value
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {substitute(k, mapping): substitute(v, mapping) for k, v in value.items()}
    return value


def send(host: str, port: int, request: dict[str, Any], mapping: dict[str, str], *, timeout: float = 30.0) -> Answer:
    """Send one recorded request as the recorder did (http.client, same body bytes)."""
    body: bytes | None = None
    if "json" in request:
        body = json.dumps(substitute(request["json"], mapping)).encode()
    elif "body" in request:
        body = substitute(request["body"], mapping).encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(request["method"], substitute(request["path"], mapping), body=body,
                     headers=dict(request.get("headers") or {}))
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, resp.getheader("content-type"), data.decode("utf-8", errors="replace"))
    finally:
        conn.close()


async def replay_group(
    exchanges: list[dict[str, Any]], *, host: str, port: int, mapping: dict[str, str]
) -> list[tuple[dict[str, Any], Answer]]:
    """Send a group's requests in seq order; consecutive `concurrent-*` ones together."""
    results: list[tuple[dict[str, Any], Answer]] = []
    i = 0
    while i < len(exchanges):
        batch = [exchanges[i]]
        if exchanges[i]["name"].startswith("concurrent"):
            while i + len(batch) < len(exchanges) and exchanges[i + len(batch)]["name"].startswith("concurrent"):
                batch.append(exchanges[i + len(batch)])
        answers = await asyncio.gather(
            *(asyncio.to_thread(send, host, port, ex["request"], mapping) for ex in batch)
        )
        results.extend(zip(batch, answers, strict=True))
        i += len(batch)
    return results


# ---------------------------------------------------------------------------- normalising
def _paths(value: Any, model_dir: str, root: str) -> Any:
    if isinstance(value, str):
        return value.replace(model_dir, "{MODEL}").replace(root, "{ADAPTERS}")
    if isinstance(value, list):
        return [_paths(v, model_dir, root) for v in value]
    if isinstance(value, dict):
        return {k: _paths(v, model_dir, root) for k, v in value.items()}
    return value


_PATTERNS: dict[str, Callable[[Any], bool]] = {
    "created": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 1_500_000_000,
    "modelperm": lambda v: isinstance(v, str) and re.fullmatch(r"modelperm-[0-9a-f]{16}", v) is not None,
    "cmpl": lambda v: isinstance(v, str) and re.fullmatch(r"cmpl-[0-9a-f]{16}", v) is not None,
    "fingerprint": lambda v: isinstance(v, str) and re.fullmatch(r"vllm-0\.32\.0-[0-9a-f]{8}", v) is not None,
}


def normalise_json(value: Any, problems: list[str], *, recorded: bool, where: str = "$") -> Any:
    """Volatile values → `<volatile>` (type-checked unless `recorded`), patterned values → a tag."""
    if isinstance(value, list):
        return [normalise_json(v, problems, recorded=recorded, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        here = f"{where}.{key}"
        check: str | None = None
        if key == "created":
            check = "created"
        elif key == "id" and value.get("object") == "model_permission":
            check = "modelperm"
        elif key == "id" and value.get("object") == "text_completion":
            check = "cmpl"
        elif key == "system_fingerprint":
            check = "fingerprint"
        if check is not None:
            if not recorded and not _PATTERNS[check](item):
                problems.append(f"{here}: {item!r} does not look like a {check}")
            out[key] = VOLATILE
            continue
        if key == "text" and where.endswith("]") and ".choices[" in where:
            if not isinstance(item, str):
                problems.append(f"{here}: not a string")
            out[key] = "<text>"
            continue
        if key == "usage" and isinstance(item, dict):
            usage = dict(item)
            pt, ct, tt = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
            if not all(isinstance(x, int) for x in (pt, ct, tt)) or pt + ct != tt:  # type: ignore[operator]
                problems.append(f"{here}: inconsistent token counts {usage}")
            usage["prompt_tokens"] = "<int>"
            usage["total_tokens"] = "<int>"
            out[key] = usage
            continue
        out[key] = normalise_json(item, problems, recorded=recorded, where=here)
    return out


def metrics_lines(text: str) -> list[str]:
    """Rule 4: the lora_requests_info lines, sample values replaced."""
    lines = [
        line for line in text.splitlines()
        if line.startswith(("# HELP vllm:lora_requests_info", "# TYPE vllm:lora_requests_info", "vllm:lora_requests_info"))
    ]
    return [re.sub(r"} \S+$", "} " + VOLATILE, line) if line.startswith("vllm:") else line for line in lines]


@dataclass(frozen=True)
class Normal:
    """An answer after the recordings' normalisation rules: equal forms mean the same answer."""

    status: int
    content_type: str | None
    body: Any

    def show(self) -> str:
        body = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return f"{self.status} {self.content_type or '-'} {body[:1500]}"


def recorded_form(exchange: dict[str, Any]) -> Normal:
    """The recorded response's normal form."""
    expected = exchange["response"]
    if "json" in expected:
        body: Any = normalise_json(expected["json"], [], recorded=True)
    elif exchange["request"]["path"].startswith("/metrics"):
        body = _metrics_form(expected["text"].split("\n") if expected["text"] else [])
    else:
        body = expected.get("text", "")
    return Normal(expected["status"], expected["content_type"], body)


def normal_form(exchange: dict[str, Any], answer: Answer, problems: list[str], *, model_dir: str,
                root: str) -> Normal:
    """A live answer's normal form, in the shape the recording of `exchange` has; values that only
    match a pattern (ids, times, fingerprints, token counts) are checked into `problems`."""
    expected = exchange["response"]
    if "json" in expected:
        try:
            got = json.loads(answer.text)
        except ValueError:
            body: Any = f"(not JSON) {answer.text[:300]}"
        else:
            body = normalise_json(_paths(got, model_dir, root), problems, recorded=False)
    elif exchange["request"]["path"].startswith("/metrics"):
        body = _metrics_form(metrics_lines(_paths(answer.text, model_dir, root)))
    else:
        body = _paths(answer.text, model_dir, root)
    return Normal(answer.status, answer.content_type, body)


def _metrics_form(lines: list[str]) -> dict[str, list[str]]:
    """Rule 4: comment lines in order; series as a set (their number and order depend on timing)."""
    return {"headers": [x for x in lines if x.startswith("#")],
            "series": sorted({x for x in lines if not x.startswith("#")})}


def differences(got: Normal, want: Normal, *, names: tuple[str, str] = ("got", "want")) -> list[str]:
    """What differs between two normal forms (empty: the same answer)."""
    problems = []
    if got.status != want.status:
        problems.append(f"status {got.status} != {want.status}")
    if got.content_type != want.content_type:
        problems.append(f"content-type {got.content_type!r} != {want.content_type!r}")
    if got.body != want.body:
        problems.append("body differs")
    if problems:
        problems.append(f"{names[0]}: {got.show()}\n  {names[1]}: {want.show()}")
    return problems


def compare(exchange: dict[str, Any], answer: Answer, *, model_dir: str, root: str) -> list[str]:
    """Differences between a recorded response and a live one, after normalisation (empty = same)."""
    problems: list[str] = []
    got = normal_form(exchange, answer, problems, model_dir=model_dir, root=root)
    return problems + differences(got, recorded_form(exchange))


def iter_cases(groups: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    """Group names, in file order."""
    yield from groups
