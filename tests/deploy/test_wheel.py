"""The production wheel carries the controller only: built offline from exactly what the Dockerfile
copies, it holds no simulator or dev-environment module, needs neither numpy nor safetensors, and
its dev entry points (`lora-controller dev`, `lora-vllm-sim`) fail with one line instead of a
traceback."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.rendering import REPO
from tests.deploy.test_dockerfile import DOCKERFILE, _copy_sources, instructions

DEV_PACKAGES = ("lora_controller/simulator/", "lora_controller/devenv/")
DEV_LIBRARIES = ("numpy", "safetensors", "scipy")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from the Dockerfile's build context (offline, no build isolation)."""
    root = tmp_path_factory.mktemp("wheel")
    context = root / "src"
    context.mkdir()
    for inst in instructions(DOCKERFILE.read_text()):
        if inst.keyword != "COPY" or "--from=" in inst.args:
            continue
        for source in _copy_sources(inst):
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, context / source)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(root / "dist"), str(context)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (root / "dist").glob("lora_controller-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked as site-packages would hold it."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_the_wheel_holds_the_controller_and_no_dev_tools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = email.message_from_bytes(archive.read(next(n for n in names if n.endswith("/METADATA"))))
        entry_points = archive.read(next(n for n in names if n.endswith("/entry_points.txt"))).decode()
    assert not [n for n in names if n.startswith(DEV_PACKAGES)]
    for module in ("cli/main.py", "cli/dev.py", "cli/run.py", "reconcile/controller.py", "server/app.py",
                   "scheduler/__init__.py", "kube/client.py", "vllm/client.py", "py.typed"):
        assert f"lora_controller/{module}" in names, module
    runtime = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert not [r for r in runtime if r.split(">")[0].split("=")[0].strip().lower() in DEV_LIBRARIES], runtime
    assert "lora-controller = lora_controller.cli.main:main" in entry_points
    assert "lora-vllm-sim = lora_controller.cli.dev:vllm_sim" in entry_points
    # The placement view's files and the kubectl plugin ship with the controller.
    assert "kubectl-lora = lora_controller.kubectl.main:main" in entry_points
    for static in ("index.html", "login.html", "view.css", "view.js"):
        assert f"lora_controller/server/static/{static}" in names, static


BLOCK_DEV_LIBRARIES = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in DEV_LIBRARIES)


def _python(installed: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run against the unpacked wheel only (not the checkout), numpy & co. made unimportable."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, "-c", BLOCK_DEV_LIBRARIES + code], cwd=installed.parent,
                          env=env, capture_output=True, text=True, timeout=120)


def test_every_module_of_the_wheel_imports_without_numpy_or_safetensors(installed: Path) -> None:
    proc = _python(installed, (
        "import importlib, pkgutil, lora_controller\n"
        f"assert lora_controller.__file__.startswith({str(installed)!r}), lora_controller.__file__\n"
        "names = [m.name for m in pkgutil.walk_packages(lora_controller.__path__, 'lora_controller.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 40


@pytest.mark.parametrize(("call", "prog"), [
    ("from lora_controller.cli.main import main; main(['dev', 'sim-pods', '--count', '2'])", "lora-controller dev"),
    ("from lora_controller.cli.dev import vllm_sim; vllm_sim(['--model', 'x'])", "lora-vllm-sim"),
])
def test_dev_commands_of_a_production_install_fail_with_one_line(installed: Path, call: str, prog: str) -> None:
    proc = _python(installed, call)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prog}: the development tools") and "pip install -e" in lines[0]
    assert proc.stdout == ""


def test_the_controller_commands_of_a_production_install_work(installed: Path) -> None:
    proc = _python(installed, "from lora_controller.cli.main import main; main(['run', '--help'])")
    assert proc.returncode == 0 and "--adapter-store" in proc.stdout, proc.stderr
    proc = _python(installed, "from lora_controller.cli.main import main; main(['crd'])")
    assert proc.returncode == 0 and "kind: CustomResourceDefinition" in proc.stdout, proc.stderr


def test_the_view_and_the_plugin_of_a_production_install_work(installed: Path) -> None:
    proc = _python(installed, "from lora_controller.server.page import Page; print(sorted(Page(None).files))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['index.html', 'login.html', 'view.css', 'view.js']"
    proc = _python(installed, "from lora_controller.kubectl.main import main; main(['plan', '--help'])")
    assert proc.returncode == 0 and "usage: kubectl lora plan" in proc.stdout, proc.stderr
