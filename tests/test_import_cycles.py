"""No package of ``agent/`` imports a package that imports it back.

The packages are layered (event names below the appspec and the hook runner, the
revision pipeline below the commands, the commands below the two programs); a cycle
makes two packages one in all but name. The graph is read from the source with ``ast``,
counting every import, including the deferred ones inside functions, at two levels: the
top-level packages of ``agent/`` (and its top-level modules), and every package,
sub-packages apart (``agent.revision.fetchers`` may import ``agent.revision``, not the
reverse).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Set, Tuple

AGENT = Path(__file__).resolve().parent.parent / "agent"
SERVER = Path(__file__).resolve().parent.parent / "server"

Graph = Dict[str, Set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(tree: ast.AST) -> Iterator[str]:
    """Every module an import statement may name: ``from a import b`` may mean ``a.b``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def module_imports(root: Path) -> Graph:
    """Module -> the modules of ``agent`` it imports (anywhere in its body)."""
    paths = {_module_name(path, root): path for path in root.rglob("*.py")}
    return {
        module: {
            name
            for name in _imported_names(ast.parse(path.read_text(encoding="utf-8")))
            if name in paths and name != module
        }
        for module, path in paths.items()
    }


def top_level_unit(module: str, packages: Set[str]) -> str:
    """``agent.revision.fetchers.s3`` -> ``agent.revision``; ``agent.errors`` stays."""
    return ".".join(module.split(".")[:2])


def package_unit(module: str, packages: Set[str]) -> str:
    """The package a module belongs to: itself for a package, its parent otherwise; a
    top-level module of ``agent`` is a unit of its own (``agent`` itself holds them all)."""
    if module in packages or module.count(".") == 1:
        return module
    return module.rsplit(".", 1)[0]


def unit_graph(
    modules: Graph, unit_of: Callable[[str, Set[str]], str], packages: Set[str]
) -> Graph:
    graph: Graph = {}
    for module, imported in modules.items():
        unit = unit_of(module, packages)
        targets = graph.setdefault(unit, set())
        targets.update(unit_of(name, packages) for name in imported)
        targets.discard(unit)
    return graph


def find_cycle(graph: Graph) -> List[str]:
    """One cycle of ``graph`` as a path that ends where it starts, or [] when it has none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _graphs(root: Path) -> Tuple[Graph, Graph]:
    modules = module_imports(root)
    packages = {_module_name(path, root) for path in root.rglob("__init__.py")}
    packages.discard(root.name)
    return (
        unit_graph(modules, top_level_unit, packages),
        unit_graph(modules, package_unit, packages),
    )


def test_no_cycle_between_the_top_level_packages_of_agent() -> None:
    top_level, _ = _graphs(AGENT)
    assert "agent.revision" in top_level["agent.host_command"]
    assert find_cycle(top_level) == []


def test_no_cycle_between_any_two_packages_of_agent() -> None:
    _, packages = _graphs(AGENT)
    assert "agent.revision" in packages["agent.revision.fetchers"]
    assert find_cycle(packages) == []


def test_no_cycle_between_the_packages_of_the_server() -> None:
    top_level, packages = _graphs(SERVER)
    assert "server.access_keys" in top_level["server.request_auth"]
    assert find_cycle(top_level) == []
    assert find_cycle(packages) == []


def test_the_agent_never_imports_the_server() -> None:
    """Hosts install the agent without the server's dependencies; the server builds on the
    agent's models and signing, never the other way round."""
    importers = sorted(
        path.relative_to(AGENT.parent).as_posix()
        for path in AGENT.rglob("*.py")
        if any(
            name == "server" or name.startswith("server.")
            for name in _imported_names(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert importers == []


def test_a_cycle_is_found_and_named(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    for package, source in {
        "low": "import json\n",
        "high": "from agent.low.names import NAME\n",
        "high.sub": "from agent.high.thing import X\n",
    }.items():
        folder = root.joinpath(*package.split("."))
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        (folder / "mod.py").write_text(source)
    (root / "__init__.py").write_text("")
    (root / "low" / "names.py").write_text("def f():\n    from agent.high import mod\n")
    (root / "high" / "thing.py").write_text("from agent.high.sub import mod\n")
    top_level, packages = _graphs(root)
    assert find_cycle(top_level) in (
        ["agent.high", "agent.low", "agent.high"],
        ["agent.low", "agent.high", "agent.low"],
    )
    assert find_cycle(packages)[0] == find_cycle(packages)[-1]
    assert {"agent.high", "agent.high.sub"} <= set(find_cycle(packages))
