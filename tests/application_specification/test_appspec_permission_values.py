"""The small languages of a permission: mode text, ACL entries, SELinux ranges, globs."""

from __future__ import annotations

import pytest

from agent.application_specification.model import SelinuxRange
from agent.application_specification.permission_values import (
    check_simple_glob,
    is_account_name,
    matches_simple_glob,
    normalise_acl_entry,
    parse_mode_text,
    parse_selinux_range,
)


@pytest.mark.parametrize(
    ("text", "mode"), [("644", 0o644), ("0644", 0o644), ("4755", 0o4755), ("1", 1), ("000", 0)]
)
def test_mode_text(text: str, mode: int) -> None:
    assert parse_mode_text(text) == mode


@pytest.mark.parametrize("text", ["", "08", "12345", "0o644", " 644", "64a"])
def test_bad_mode_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mode_text(text)


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("u:bob:rwx", "user:bob:rwx"),
        ("user:bob:r", "user:bob:r--"),
        ("bob:6", "user:bob:rw-"),
        ("g:web:r-x", "group:web:r-x"),
        ("group:1001:0", "group:1001:---"),
        ("m::rw", "mask::rw-"),
        ("mask:rwx", "mask::rwx"),
        ("d:u::rwx", "d:user::rwx"),
        ("default:group:web:5", "d:group:web:r-x"),
        ("d:o:r", "d:other::r--"),
        ("d:other::4", "d:other::r--"),
        ("d:bob:xw", "d:user:bob:-wx"),
        ("user:mask:rwx", "user:mask:rwx"),
    ],
)
def test_acl_entries_are_normalised(entry: str, normalised: str) -> None:
    assert normalise_acl_entry(entry) == normalised


@pytest.mark.parametrize(
    "entry",
    [
        "rwx",  # no qualifier
        "a:b:c:d:rwx",  # too many parts
        "x:bob:rwx",  # unknown type
        "u:bob:c:rwx",  # four parts not starting with d
        "d:d:bob:rwx",  # default twice
        "user::rwx",  # base entries go through mode
        "g::r",
        "o:r",
        "mask:bob:rwx",  # mask/other take no name
        "other:bob:r",
        "u:bob:rwq",
        "u:bob:8",
        "u:bob:",
        "u:bad name:rwx",
        "u:-bob:rwx",
    ],
)
def test_bad_acl_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        normalise_acl_entry(entry)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("s0", SelinuxRange("s0")),
        ("s0-s0", SelinuxRange("s0")),
        ("s0-s15:c0.c1023", SelinuxRange("s0", "s15:c0.c1023")),
        ("s2:c5,c1,c2,c3", SelinuxRange("s2:c1.c3,c5")),
        ("s0:c1-s1:c1.c4", SelinuxRange("s0:c1", "s1:c1.c4")),
        ("s01", SelinuxRange("s1")),
    ],
)
def test_selinux_ranges(text: str, parsed: SelinuxRange) -> None:
    assert parse_selinux_range(text) == parsed


def test_selinux_range_renders_back() -> None:
    assert parse_selinux_range("s0-s15:c0.c1023").render() == "s0-s15:c0.c1023"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "s",
        "sx",
        "s0-",
        "s0-s1-s2",
        "s1-s0",
        "s0:",
        "s0:c1,",
        "s0:c1024",
        "s0:c3.c1",
        "s0:c1.c2.c3",
        "s0:c1,c0.c2",
        "s0:c1-s0",
        "s0:x1",
    ],
)
def test_bad_selinux_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        parse_selinux_range(text)


@pytest.mark.parametrize(
    ("name", "pattern", "matches"),
    [
        ("run.sh", "*.sh", True),
        ("run.sh.bak", "*.sh", False),
        (".sh", "*.sh", True),
        ("run.sh", "run.sh", True),
        ("run.sh", "r*n*.sh", True),
        ("ab", "a*b*c", False),
        ("aXbXc", "a*b*c", True),
        ("abc", "a**c", True),
        ("aa", "a*a", True),
        ("a", "a*a", False),
        ("x?", "x?", True),
        ("xy", "x?", False),
        ("[ab]", "[ab]", True),
        ("a", "[ab]", False),
        ("anything", "*", True),
        ("", "*", True),
        ("a/b", "*", False),
    ],
)
def test_simple_glob(name: str, pattern: str, matches: bool) -> None:
    assert matches_simple_glob(name, pattern) is matches


@pytest.mark.parametrize("pattern", ["", "a/b", "*/x", "a\0"])
def test_bad_simple_globs(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_simple_glob(pattern)


@pytest.mark.parametrize(
    "name", ["root", "www-data", "ec2-user", "1000", "user@corp.example", "m$"]
)
def test_account_names(name: str) -> None:
    assert is_account_name(name)


@pytest.mark.parametrize("name", ["", "-u", "a b", "a:b", "a,b", "x" * 257, "bob\n"])
def test_bad_account_names(name: str) -> None:
    assert not is_account_name(name)
