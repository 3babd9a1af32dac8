"""The configuration reference of the docs, made from the declarations.

The tables of README.md and docs/behaviour.md that list configuration keys and
``codedeploy-local``'s flags are made from the one declaration of each
(:mod:`agent.configuration.model`, :mod:`agent.configuration.on_premises`,
:mod:`agent.local_deployment.flags`), and so are the sentences that name a group of keys.
``python -m agent.config_reference`` prints every table; ``--check`` names each place where
the two documents differ from the declarations (exit 1); ``--write`` rewrites their tables.
A test runs the check, so that a key added or changed reaches the docs.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from agent.configuration.keys import ConfigKey, KeyOrigin
from agent.configuration.model import AGENT_CONFIG_KEYS, IGNORED_AGENT_KEYS
from agent.configuration.on_premises import ON_PREMISES_KEYS
from agent.local_deployment.flags import LOCAL_FLAGS, LocalFlag

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Table:
    """A Markdown table; the docs' table with a first cell in common is this one."""

    title: str
    header: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]

    def lines(self) -> List[str]:
        separator = "|" + "---|" * len(self.header)
        return [_row(self.header), separator, *(_row(row) for row in self.rows)]

    @property
    def first_cells(self) -> FrozenSet[str]:
        return frozenset(row[0] for row in self.rows)


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def key_table(title: str, keys: Iterable[ConfigKey]) -> Table:
    rows = tuple((f"`{key.name}`", key.default_text, key.doc) for key in keys)
    return Table(title, ("key", "default", "meaning"), rows)


def flag_table(title: str, flags: Iterable[LocalFlag]) -> Table:
    rows = tuple(
        (", ".join(f"`{name}`" for name in flag.names), flag.shown_default, flag.doc)
        for flag in flags
    )
    return Table(title, ("flag", "default", "meaning"), rows)


def _agent_keys(origin: KeyOrigin) -> Tuple[ConfigKey, ...]:
    return tuple(key for key in AGENT_CONFIG_KEYS if key.origin is origin)


AWS_KEYS = key_table("the AWS agent's keys", _agent_keys(KeyOrigin.AWS))
HARDENING_KEYS = key_table("the AWS agent v2's hardening keys", _agent_keys(KeyOrigin.AWS_V2))
OWN_KEYS = key_table("this agent's own keys", _agent_keys(KeyOrigin.OWN))
IGNORED_KEYS = Table(
    "the AWS agent's keys this agent does not support",
    ("key", "meaning"),
    tuple((f"`{key.name}`", key.doc) for key in IGNORED_AGENT_KEYS),
)
ON_PREMISES = key_table("the on-premises file's keys", ON_PREMISES_KEYS)
LOCAL_FLAGS_TABLE = flag_table("codedeploy-local's flags", LOCAL_FLAGS)
AWS_LOCAL_FLAGS_TABLE = flag_table(
    "the AWS developer utility's flags",
    (flag for flag in LOCAL_FLAGS if flag.origin is KeyOrigin.AWS),
)
ALL_TABLES = (AWS_KEYS, HARDENING_KEYS, OWN_KEYS, IGNORED_KEYS, ON_PREMISES, LOCAL_FLAGS_TABLE)


@dataclass(frozen=True)
class NameList:
    """A sentence that names a group of keys: between ``start`` and ``end`` (whitespace
    aside), its names in backquotes (``instance_service_*`` for several) are ``names``."""

    start: str
    end: str
    names: FrozenSet[str]

    def problem(self, text: str) -> Optional[str]:
        flat = " ".join(text.split())
        begin = flat.find(self.start)
        end = flat.find(self.end, begin + len(self.start)) if begin >= 0 else -1
        if end < 0:
            return f"no sentence from {self.start!r} to {self.end!r}"
        written = re.findall(r"`([^`]+)`", flat[begin + len(self.start) : end])
        named = {name for pattern in written for name in fnmatch.filter(self.names, pattern)}
        unknown = sorted(p for p in written if not fnmatch.filter(self.names, p))
        missing = sorted(self.names - named)
        if not unknown and not missing:
            return None
        return f"the sentence {self.start!r} lacks {missing} and names {unknown} in excess"


def _names(keys: Iterable[ConfigKey]) -> FrozenSet[str]:
    return frozenset(key.name for key in keys)


@dataclass(frozen=True)
class Document:
    """A document, the tables it must hold and those it may, and its sentences of names."""

    path: str
    tables: Tuple[Table, ...]
    optional_tables: Tuple[Table, ...] = ()
    lists: Tuple[NameList, ...] = ()


DOCUMENTS = (
    Document(
        "README.md",
        (HARDENING_KEYS, OWN_KEYS, LOCAL_FLAGS_TABLE),
        (AWS_KEYS, IGNORED_KEYS, ON_PREMISES),
        (
            NameList(
                "takes every key of the AWS agent (",
                ") with the AWS defaults",
                _names(_agent_keys(KeyOrigin.AWS)),
            ),
            NameList(
                "this agent does not support (",
                "); a bad value",
                frozenset(key.name for key in IGNORED_AGENT_KEYS),
            ),
        ),
    ),
    Document(
        "docs/behaviour.md",
        (AWS_KEYS, AWS_LOCAL_FLAGS_TABLE),
        lists=(
            NameList(
                "hardening keys of the AWS agent v2 keep their names (",
                ").",
                _names(_agent_keys(KeyOrigin.AWS_V2)),
            ),
            NameList(
                "Keys of this agent's own:", "README's tables", _names(_agent_keys(KeyOrigin.OWN))
            ),
        ),
    ),
)


def _tables_in(lines: Sequence[str]) -> Iterator[Tuple[int, int]]:
    """``(first, end)`` line indexes of each Markdown table of ``lines``."""
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        first = index
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        yield first, index


def _first_cells(table_lines: Sequence[str]) -> FrozenSet[str]:
    return frozenset(line.split("|")[1].strip() for line in table_lines[2:])


def _matching(document: Document, table_lines: Sequence[str]) -> Optional[Table]:
    cells = _first_cells(table_lines)
    for table in document.tables + document.optional_tables:
        if cells & table.first_cells:
            return table
    return None


def document_problems(document: Document, text: str) -> List[str]:
    """Where ``text`` (the document's) differs from the declarations, one line each."""
    lines = [line.rstrip() for line in text.splitlines()]
    problems: List[str] = []
    found: List[Table] = []
    for first, end in _tables_in(lines):
        table = _matching(document, lines[first:end])
        if table is None:
            continue
        found.append(table)
        written, made = lines[first:end], table.lines()
        if written != made:
            problems.append(_difference(document.path, first, table, written, made))
    problems += [
        f"{document.path}: no table of {table.title}"
        for table in document.tables
        if table not in found
    ]
    for name_list in document.lists:
        problem = name_list.problem(text)
        if problem is not None:
            problems.append(f"{document.path}: {problem}")
    return problems


def _difference(
    path: str, first: int, table: Table, written: Sequence[str], made: Sequence[str]
) -> str:
    for offset, (old, new) in enumerate(zip(written, made)):
        if old != new:
            return (
                f"{path}:{first + offset + 1}: the table of {table.title} says {old!r}; the"
                f" declarations make {new!r}"
            )
    return (
        f"{path}:{first + 1}: the table of {table.title} has {len(written) - 2} rows; the"
        f" declarations make {len(made) - 2}"
    )


def rewritten(document: Document, text: str) -> str:
    """``text`` with each of the document's tables made anew from the declarations."""
    lines = text.splitlines()
    for first, end in reversed(list(_tables_in(lines))):
        table = _matching(document, lines[first:end])
        if table is not None:
            lines[first:end] = table.lines()
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.config_reference",
        description="Print the configuration tables, or check or rewrite them in the docs.",
    )
    parser.add_argument("--check", action="store_true", help="check README.md and the docs")
    parser.add_argument("--write", action="store_true", help="rewrite their tables")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository's folder")
    args = parser.parse_args(argv)
    if not args.check and not args.write:
        for table in ALL_TABLES:
            print(f"{table.title}:\n\n" + "\n".join(table.lines()) + "\n")
        return 0
    problems: List[str] = []
    for document in DOCUMENTS:
        path = args.root / document.path
        text = path.read_text(encoding="utf-8")
        if args.write:
            text = rewritten(document, text)
            path.write_text(text, encoding="utf-8")
        problems += document_problems(document, text)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
