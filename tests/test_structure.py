"""The code keeps the shape the design asks for: one concept per module, short functions.

No module of the package above 450 lines and no function above 60 (docs/architecture.md): past
that, two concepts share a room. Generated data is not code and does not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lora_controller"
MAX_MODULE = 450
MAX_FUNCTION = 60


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def test_no_module_above_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert not long, f"modules above {MAX_MODULE} lines: {long}"


def test_no_function_above_the_limit() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length})")
    assert not long, f"functions above {MAX_FUNCTION} lines: {long}"
