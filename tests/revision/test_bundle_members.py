"""The pure member checks shared by the unpacker and the folder copier."""

from __future__ import annotations

import stat

import pytest

from agent.revision.bundle import (
    SizeBudget,
    UnpackPolicy,
    check_member_kind,
    check_member_permissions,
    member_parts,
    relative_member_name,
    show_name,
)
from agent.revision.errors import BundleError

WHERE = "bundle /b.tgz"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        (b"a", (b"a",)),
        (b"./a//b/", (b"a", b"b")),
        (b"a/./b", (b"a", b"b")),
        (b"./", ()),
        (b".", ()),
        (b"..a/b..", (b"..a", b"b..")),
    ],
)
def test_member_parts_normalises_names(name: bytes, parts: tuple[bytes, ...]) -> None:
    assert member_parts(name, WHERE) == parts


@pytest.mark.parametrize("name", [b"/etc/passwd", b"//x", b"..", b"../x", b"a/../../x", b"a/.."])
def test_member_parts_refuses_names_that_leave_the_folder(name: bytes) -> None:
    with pytest.raises(BundleError) as caught:
        member_parts(name, WHERE)
    assert str(caught.value).startswith(WHERE)


@pytest.mark.parametrize(
    "name",
    [b"a", b"a/b/", b"./a", b"a/./b", b"a//b", b".env", b"a/.hidden/b", b"a/..b", b"./", b"x/."],
)
def test_relative_member_name_agrees_with_member_parts(name: bytes) -> None:
    assert relative_member_name(name, WHERE) == b"/".join(member_parts(name, WHERE))


@pytest.mark.parametrize("name", [b"/abs", b"../x", b"a/../../x", b"a/b/.."])
def test_relative_member_name_refuses_what_member_parts_refuses(name: bytes) -> None:
    with pytest.raises(BundleError):
        relative_member_name(name, WHERE)


@pytest.mark.parametrize("name", [b"", None])
def test_member_parts_refuses_empty_names(name: bytes) -> None:
    with pytest.raises(BundleError, match="empty"):
        member_parts(name, WHERE)


def test_show_name_keeps_messages_on_one_line() -> None:
    assert show_name(b"a\nb\xff") == "'a\\nb\\xff'"


@pytest.mark.parametrize("kind", [stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK])
def test_files_folders_and_symlinks_are_allowed(kind: int) -> None:
    check_member_kind(kind, b"x", WHERE, UnpackPolicy())


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        (stat.S_IFCHR, "character device"),
        (stat.S_IFBLK, "block device"),
        (stat.S_IFIFO, "FIFO"),
        (stat.S_IFSOCK, "socket"),
        (0o150000, "unknown type"),
    ],
)
def test_special_files_are_refused_whatever_the_policy(kind: int, word: str) -> None:
    with pytest.raises(BundleError, match=word):
        check_member_kind(kind, b"x", WHERE, UnpackPolicy())


def test_symlinks_are_refused_when_the_policy_says_so() -> None:
    with pytest.raises(BundleError, match="reject_symlinks_in_bundle"):
        check_member_kind(stat.S_IFLNK, b"x", WHERE, UnpackPolicy(reject_symlinks=True))


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o0777, 0o1777, 0o0646])
def test_unsafe_modes_are_refused_only_under_the_policy(mode: int) -> None:
    check_member_permissions(stat.S_IFREG, mode, b"x", WHERE, UnpackPolicy())
    with pytest.raises(BundleError, match=f"{mode:04o}"):
        check_member_permissions(
            stat.S_IFREG, mode, b"x", WHERE, UnpackPolicy(reject_unsafe_permissions=True)
        )


def test_a_symlink_mode_is_never_unsafe() -> None:
    policy = UnpackPolicy(reject_unsafe_permissions=True)
    check_member_permissions(stat.S_IFLNK, 0o777, b"x", WHERE, policy)
    check_member_permissions(stat.S_IFREG, 0o755, b"x", WHERE, policy)


def test_size_budget_allows_exactly_the_limit() -> None:
    budget = SizeBudget(100, WHERE)
    budget.declare(60, b"a")
    budget.declare(40, b"b")
    with pytest.raises(BundleError, match="'c'"):
        budget.declare(1, b"c")


def test_size_budget_counts_written_bytes_separately() -> None:
    budget = SizeBudget(10, WHERE)
    budget.declare(10, b"a")
    budget.write(10, b"a")
    with pytest.raises(BundleError, match="archive_max_extraction_size"):
        budget.write(1, b"a")


def test_no_limit_counts_nothing() -> None:
    budget = SizeBudget(None, WHERE)
    budget.declare(10**15, b"a")
    budget.write(10**15, b"a")
