"""The docs' configuration tables are the declarations' (agent/config_reference.py).

README.md and docs/behaviour.md list the configuration keys and ``codedeploy-local``'s
flags in tables, and name groups of keys in sentences; each must say what the
declarations say (name, default, meaning), so that a key added, changed or documented
anew cannot leave the docs behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config_reference import DOCUMENTS, Document, document_problems, rewritten
from tests.support.checkout import REPO

README, BEHAVIOUR = DOCUMENTS


def _text(document: Document) -> str:
    return (REPO / document.path).read_text(encoding="utf-8")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.path)
def test_the_docs_say_what_the_declarations_say(document: Document) -> None:
    assert document_problems(document, _text(document)) == []


def test_a_changed_row_is_found_with_its_line_and_rewritten_from_the_declarations() -> None:
    text = _text(README)
    row = "| `reject_symlinks_in_bundle` | `false` |"
    assert row in text
    drifted = text.replace(row, "| `reject_symlinks_in_bundle` | `true` |")
    [problem] = document_problems(README, drifted)
    line = text[: text.index(row)].count("\n") + 1
    assert problem.startswith(f"README.md:{line}: the table of the AWS agent v2's hardening")
    assert rewritten(README, drifted) == text


def test_a_missing_row_or_table_is_found() -> None:
    text = _text(BEHAVIOUR)
    row = next(line for line in text.splitlines() if line.startswith("| `time_zone` |"))
    [problem] = document_problems(BEHAVIOUR, text.replace(row + "\n", ""))
    assert "the table of the AWS agent's keys" in problem
    assert rewritten(BEHAVIOUR, text.replace(row + "\n", "")) == text

    without_flags = "\n".join(
        line for line in text.splitlines() if not line.startswith(("| `-", "| flag"))
    )
    problems = document_problems(BEHAVIOUR, without_flags)
    assert "docs/behaviour.md: no table of the AWS developer utility's flags" in problems


def test_a_sentence_that_names_a_group_of_keys_is_checked() -> None:
    text = _text(README)
    assert "`time_zone`)" in text
    [problem] = document_problems(README, text.replace("`time_zone`)", "`time_zones`)"))
    assert "['time_zone']" in problem and "['time_zones']" in problem


def test_the_command_line_names_the_drift_and_rewrites_the_tables(tmp_path: Path) -> None:
    for document in DOCUMENTS:
        (tmp_path / document.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / document.path, tmp_path / document.path)
    readme = tmp_path / "README.md"
    readme.write_text(
        _text(README).replace(
            "| `hook_use_cgroups` | `true` |", "| `hook_use_cgroups` | `false` |"
        ),
        encoding="utf-8",
    )

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.config_reference", *flags, "--root", str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    checked = run("--check")
    assert checked.returncode == 1
    assert "README.md:" in checked.stderr and "this agent's own keys" in checked.stderr
    written = run("--write")
    assert written.returncode == 0, written.stderr
    assert readme.read_text(encoding="utf-8") == _text(README)
    assert run("--check").returncode == 0
