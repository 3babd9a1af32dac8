"""The README's Layout section matches the code.

A reader finds where a change goes from that section, so it must name every package that
exists and nothing that does not: every folder of Python code under the project's packages
(``agent/``, ``release/``, and any other top-level package the distribution ships) has a
line of its own, and every path a line names exists in the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Set

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Top-level folders whose Python packages the Layout section must list one by one.
PACKAGE_ROOTS = ("agent", "release", "server")


def _layout_block(text: str) -> List[str]:
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return block.splitlines()[1:]


def layout_paths(text: str) -> Set[str]:
    """The paths the Layout block names: the first word of each line that is not a continuation."""
    paths = set()
    for line in _layout_block(text):
        if not line.strip() or line.startswith(" "):
            continue
        paths.add(line.split()[0].rstrip("/"))
    return paths


def code_packages(root: Path) -> Set[str]:
    """Every folder holding Python code below the package roots, relative to the checkout."""
    found = set()
    for top in PACKAGE_ROOTS:
        base = root / top
        for source in base.rglob("*.py") if base.is_dir() else ():
            inner = source.parent.relative_to(base).parts
            if inner and not any(re.fullmatch(r"__pycache__|versions", part) for part in inner):
                found.add(source.parent.relative_to(root).as_posix())
    return found


def missing_from_layout(root: Path, listed: Set[str]) -> Set[str]:
    """Packages without a line; a package root without a line of its own needs one per module."""
    missing = code_packages(root) - listed
    for top in PACKAGE_ROOTS:
        if (root / top).is_dir() and top not in listed:
            modules = {
                path.relative_to(root).as_posix()
                for path in (root / top).glob("*.py")
                if path.stem not in ("__init__", "__main__")
            }
            missing |= modules - listed
    return missing


def test_every_package_has_a_line_in_the_layout() -> None:
    listed = layout_paths(README.read_text(encoding="utf-8"))
    missing = sorted(missing_from_layout(ROOT, listed))
    assert missing == [], f"packages missing from the README's Layout section: {missing}"


def test_every_path_in_the_layout_exists() -> None:
    listed = layout_paths(README.read_text(encoding="utf-8"))
    absent = sorted(path for path in listed if not (ROOT / path).exists())
    assert absent == [], f"the README's Layout section names paths that do not exist: {absent}"


def test_the_check_sees_a_package_left_out(tmp_path: Path) -> None:
    (tmp_path / "agent" / "newthing").mkdir(parents=True)
    (tmp_path / "agent" / "newthing" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "agent" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "agent" / "tool.py").write_text("", encoding="utf-8")
    text = "# x\n\n## Layout\n\n```\nagent/x/  the agent\n          more\n```\n\n## Next\n"
    assert layout_paths(text) == {"agent/x"}
    assert missing_from_layout(tmp_path, layout_paths(text)) == {"agent/newthing", "agent/tool.py"}
