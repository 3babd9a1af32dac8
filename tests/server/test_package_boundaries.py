"""The agent never imports the server (a host installs the agent without the server's
dependencies), and docs/server.md documents every configuration key with its default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from server.configuration import ServerConfig, configuration_keys

REPO = Path(__file__).resolve().parent.parent.parent


def test_no_agent_module_imports_the_server() -> None:
    offenders = []
    for path in sorted((REPO / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path}: {name}" for name in names if name.split(".")[0] == "server"]
    assert offenders == []


def test_every_configuration_key_is_documented_with_its_default() -> None:
    text = (REPO / "docs" / "server.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", text, re.MULTILINE))
    defaults = ServerConfig()
    for name in configuration_keys():
        assert name in rows, f"docs/server.md does not document {name}"
        value = getattr(defaults, name)
        shown = (
            "none"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        if isinstance(value, float) and value.is_integer():
            shown = str(int(value))
        expected = "none" if value is None else f"`{shown}`"
        assert expected in rows[name], f"{name}: default {shown} not in {rows[name]!r}"
