"""Only the programs read the environment; the engine takes what it needs as arguments.

The daemon's and ``codedeploy-local``'s command lines read the environment once, where
each program assembles its settings, and pass it down as a mapping (the region, the host
identity's inputs, what hooks inherit). Anywhere else, a read of ``os.environ`` would
make a setting that no configuration shows and no test can pass in. The walk is over the
source's syntax tree, so deferred imports and reads inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, Optional, Tuple

AGENT = Path(__file__).resolve().parent.parent / "agent"

_ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})

EVERY_VARIABLE = frozenset({"*"})
# Where each program assembles its settings; and one read that is no setting: whether the
# interpreter of this very process was started with its hash seed pinned (a fact of the
# process, which the install's helper and worker processes must each read for themselves).
ALLOWED: Dict[str, FrozenSet[str]] = {
    "daemon/cli.py": EVERY_VARIABLE,
    "local_deployment/cli.py": EVERY_VARIABLE,
    "installer/cleanup.py": frozenset({"PYTHONHASHSEED"}),
}


def _parents(tree: ast.AST) -> Dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _variable_read(node: ast.AST, parents: Dict[ast.AST, ast.AST]) -> Optional[str]:
    """The variable a read names (``os.environ.get("X")``, ``os.environ["X"]``,
    ``os.getenv("X")``), or None when it takes the whole environment."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and isinstance(parent.slice, ast.Constant):
        return str(parent.slice.value)
    call = parent
    if isinstance(parent, ast.Attribute) and parent.attr == "get":
        call = parents.get(parent)
    if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
        return str(call.args[0].value)
    return None


def environment_reads(source: str) -> Iterator[Tuple[int, Optional[str]]]:
    """``(line, variable)`` of each use of the process environment in ``source``."""
    tree = ast.parse(source)
    parents = _parents(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
            for alias in node.names:
                if alias.name in _ENVIRONMENT_NAMES:
                    yield node.lineno, None
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in ("os", "posix")
        ):
            yield node.lineno, _variable_read(node, parents)


def test_the_finder_sees_each_kind_of_read() -> None:
    source = (
        "import os\nfrom os import environ\n"
        "a = os.environ\nb = os.environ.get('A')\nc = os.environ['B']\nd = os.getenv('C')\n"
    )
    assert sorted(environment_reads(source), key=lambda read: read[0]) == [
        (2, None),
        (3, None),
        (4, "A"),
        (5, "B"),
        (6, "C"),
    ]


def test_only_the_programs_read_the_environment() -> None:
    found = []
    for path in sorted(AGENT.rglob("*.py")):
        module = path.relative_to(AGENT).as_posix()
        allowed = ALLOWED.get(module, frozenset())
        for line, variable in environment_reads(path.read_text(encoding="utf-8")):
            if allowed != EVERY_VARIABLE and variable not in allowed:
                found.append(f"agent/{module}:{line} reads {variable or 'the environment'}")
    assert found == []
