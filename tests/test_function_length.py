"""No function of the package or of the installer is over 60 lines (CONTRIBUTING.md): a
longer one is split into named steps. Counted as ``ast`` does, from ``def`` (decorators
aside) to the function's last line, docstring included."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

from tests.support.checkout import REPO

LIMIT = 60


def _long_functions(root: Path) -> List[str]:
    """``<file>:<line> <name> (<n> lines)`` for each function under ``root`` over the limit."""
    found: List[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LIMIT:
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_over_60_lines() -> None:
    assert (
        _long_functions(REPO / "agent")
        + _long_functions(REPO / "release")
        + _long_functions(REPO / "server")
    ) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (package / "long.py").write_text(f"def long() -> None:\n{body}\n", encoding="utf-8")
    (package / "short.py").write_text("def short() -> None:\n    pass\n", encoding="utf-8")
    assert _long_functions(package) == [f"package/long.py:1 long ({LIMIT + 1} lines)"]
