"""Validation and normalisation of the small languages inside a ``permissions`` entry.

A permission carries a mode written as octal text, setfacl entries, an SELinux range and
simple ``*`` globs. Each has rules of its own, kept here as pure functions so that the
parser can name the offending field while the installer can reuse the glob matching.
Every function raises :class:`ValueError` with a short reason; the parser turns that into
an :class:`~agent.application_specification.model.AppSpecError` naming the field.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from agent.application_specification.model import SelinuxRange

MODE_TEXT = re.compile(r"[0-7]{1,4}")

# User and group names as Linux tools accept them (including sssd names with ``@`` and
# the trailing ``$`` of Samba machine accounts), and numeric ids. A leading ``-`` would
# read as an option and ``:``/``,``/whitespace would split an ACL or ``owner:group``.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?")
ACCOUNT_NAME_MAX_LENGTH = 256

# SELinux users and types are policy identifiers.
SELINUX_IDENTIFIER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

SELINUX_MAX_CATEGORY = 1023

_ACL_TAGS = {
    "u": "user",
    "user": "user",
    "g": "group",
    "group": "group",
    "m": "mask",
    "mask": "mask",
    "o": "other",
    "other": "other",
}
_ACL_DEFAULT_PREFIXES = ("d", "default")
_SELINUX_LEVEL = re.compile(r"s([0-9]+)(?::(.+))?")
_SELINUX_CATEGORY = re.compile(r"c([0-9]+)")


def is_account_name(text: str) -> bool:
    """Whether ``text`` can name a user or group (or be a numeric id)."""
    return len(text) <= ACCOUNT_NAME_MAX_LENGTH and ACCOUNT_NAME.fullmatch(text) is not None


def parse_mode_text(text: str) -> int:
    """Read a mode as the operator wrote it: 1 to 4 octal digits (``644``, ``0755``, ``4755``)."""
    if MODE_TEXT.fullmatch(text) is None:
        raise ValueError("1 to 4 octal digits")
    return int(text, 8)


def normalise_acl_entry(entry: str) -> str:
    """Check one ACL entry and return it in setfacl syntax, e.g. ``d:group:web:r-x``.

    Accepted forms follow the AWS agent: ``[d[efault]:][u[ser]|g[roup]|m[ask]|o[ther]:]
    [name]:perms``; a bare qualifier is a user name unless it is ``m``/``mask`` or
    ``o``/``other``. Base entries of the owner, owning group and others are set with
    ``mode``, so they are only allowed as defaults. ``perms`` is a single octal digit or
    letters from ``rwx-``.
    """
    parts = entry.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError("an entry like user:NAME:rwx, group:NAME:r-x or d:user:NAME:rw-")
    *qualifiers, perms = parts
    default = False
    if len(qualifiers) >= 2 and qualifiers[0] in _ACL_DEFAULT_PREFIXES:
        default = True
        qualifiers = qualifiers[1:]
    if len(qualifiers) == 2:
        tag = _ACL_TAGS.get(qualifiers[0])
        if tag is None:
            raise ValueError("an entry whose type is user, group, mask or other (or u, g, m, o)")
        name = qualifiers[1]
    elif len(qualifiers) == 1:
        tag = _ACL_TAGS.get(qualifiers[0])
        if tag not in ("mask", "other"):
            tag, name = "user", qualifiers[0]
        else:
            name = ""
    else:
        raise ValueError("an entry with at most 4 parts that starts with d: when it has 4")
    if tag in ("mask", "other") and name:
        raise ValueError(f"a {tag} entry without a name")
    if not default and tag != "mask" and not name:
        raise ValueError("an entry naming a user or group (set the base entries with mode)")
    if name and not is_account_name(name):
        raise ValueError("an entry whose name is a user or group name or a numeric id")
    return ("d:" if default else "") + f"{tag}:{name}:{_acl_permissions(perms)}"


def _acl_permissions(perms: str) -> str:
    if len(perms) == 1 and perms in "01234567":
        bits = int(perms, 8)
        read, write, execute = bool(bits & 4), bool(bits & 2), bool(bits & 1)
    elif perms and set(perms) <= set("rwx-"):
        read, write, execute = "r" in perms, "w" in perms, "x" in perms
    else:
        raise ValueError("an entry whose permissions are letters from rwx- or one octal digit")
    return ("r" if read else "-") + ("w" if write else "-") + ("x" if execute else "-")


def parse_selinux_range(text: str) -> SelinuxRange:
    """Check an MLS/MCS range (``s0``, ``s0-s15:c0.c1023``, ``s0:c1,c3``) and normalise it.

    Categories are sorted and consecutive runs written as ``cA.cB``; a high level equal to
    the low one is dropped. The high level must dominate the low one.
    """
    levels = text.split("-")
    if len(levels) > 2:
        raise ValueError("one or two levels such as s0 or s0-s15:c0.c1023")
    low_sensitivity, low_categories = _selinux_level(levels[0])
    if len(levels) == 1:
        return SelinuxRange(_render_level(low_sensitivity, low_categories))
    high_sensitivity, high_categories = _selinux_level(levels[1])
    if high_sensitivity < low_sensitivity or not set(low_categories) <= set(high_categories):
        raise ValueError("a high level that dominates its low level")
    low = _render_level(low_sensitivity, low_categories)
    high = _render_level(high_sensitivity, high_categories)
    return SelinuxRange(low, None if high == low else high)


def _selinux_level(text: str) -> Tuple[int, List[int]]:
    match = _SELINUX_LEVEL.fullmatch(text)
    if match is None:
        raise ValueError("levels like s0 or s0:c0.c1023")
    categories: List[int] = []
    if match.group(2) is not None:
        for item in match.group(2).split(","):
            bounds = [_selinux_category(part) for part in item.split(".")]
            if len(bounds) > 2 or bounds[0] > bounds[-1]:
                raise ValueError("categories like c0, c3 or c0.c1023 (low before high)")
            categories.extend(range(bounds[0], bounds[-1] + 1))
    if len(set(categories)) != len(categories):
        raise ValueError("categories listed once each")
    return int(match.group(1)), sorted(categories)


def _selinux_category(text: str) -> int:
    match = _SELINUX_CATEGORY.fullmatch(text)
    if match is None or int(match.group(1)) > SELINUX_MAX_CATEGORY:
        raise ValueError(f"categories from c0 to c{SELINUX_MAX_CATEGORY}")
    return int(match.group(1))


def _render_level(sensitivity: int, categories: List[int]) -> str:
    runs: List[str] = []
    start: Optional[int] = None
    for index, category in enumerate(categories):
        if start is None:
            start = category
        following = categories[index + 1] if index + 1 < len(categories) else None
        if following != category + 1:
            runs.append(f"c{start}" if start == category else f"c{start}.c{category}")
            start = None
    return f"s{sensitivity}" + (":" + ",".join(runs) if runs else "")


def check_simple_glob(pattern: str) -> None:
    """A ``pattern``/``except`` glob names direct children: non-empty and without ``/``."""
    if not pattern or "/" in pattern or "\0" in pattern:
        raise ValueError("a glob on the names of direct children such as *.sh (no /)")


def matches_simple_glob(name: str, pattern: str) -> bool:
    """Whether the single path component ``name`` matches ``pattern``.

    As in the AWS agent, only ``*`` is special (any run of characters, also none); every
    other character, ``?`` and ``[`` included, matches itself. A name with ``/`` never
    matches.
    """
    if "/" in name:
        return False
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return name == pattern
    first, *middle, last = pieces
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    position, end = len(first), len(name) - len(last)
    for piece in middle:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True
