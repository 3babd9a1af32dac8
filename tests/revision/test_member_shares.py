"""MemberPlaces: which process writes which member of an unpack shared by processes."""

from __future__ import annotations

import stat

from agent.revision.member_shares import FOLDER, ORDERED, MemberPlaces

REG, DIR, LNK = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK


def test_files_of_one_folder_go_to_one_share_and_folders_to_the_first() -> None:
    places = MemberPlaces(2)
    assert places.place(b"a", DIR, False) == FOLDER
    first = places.place(b"a/1.txt", REG, False)
    assert first in (0, 1)
    # Every file of a folder goes where the first one went: no two processes create
    # files in one folder at once.
    assert {places.place(f"a/{n}.txt".encode(), REG, False) for n in range(2, 50)} == {first}
    spread = {places.place(f"d{n}/f".encode(), REG, False) for n in range(50)}
    assert spread == {0, 1}
    assert places.place(b"top.txt", REG, False) in (0, 1)
    assert not places.all_ordered


def test_links_and_other_kinds_are_ordered_and_nothing_after_them_changes() -> None:
    places = MemberPlaces(2)
    assert places.place(b"lib/a.so", REG, False) in (0, 1)
    assert places.place(b"lib/b.so", REG, True) == ORDERED  # a hard link
    assert places.place(b"current", LNK, False) == ORDERED
    assert places.place(b"pipe", stat.S_IFIFO, False) == ORDERED
    assert places.place(b"lib/c.so", REG, False) in (0, 1)
    assert not places.all_ordered


def test_a_closed_folder_orders_everything_after_it() -> None:
    places = MemberPlaces(2)
    assert places.place(b"ro", DIR, True) == ORDERED
    assert places.all_ordered
    assert places.place(b"ro/file", REG, False) == ORDERED
    assert places.place(b"other/file", REG, False) == ORDERED


def test_a_path_met_again_orders_everything_after_it() -> None:
    places = MemberPlaces(2)
    assert places.place(b"a/x", REG, False) in (0, 1)
    assert places.place(b"a/x", REG, False) == ORDERED
    assert places.place(b"b/y", REG, False) == ORDERED


def test_a_file_where_a_folder_was_orders_everything_after_it() -> None:
    places = MemberPlaces(2)
    places.place(b"a/b/c", REG, False)
    assert places.place(b"a/b", REG, False) == ORDERED
    assert places.place(b"z", REG, False) == ORDERED


def test_a_member_under_a_file_orders_everything_after_it() -> None:
    places = MemberPlaces(2)
    places.place(b"a", REG, False)
    assert places.place(b"a/b", REG, False) == ORDERED
    assert places.all_ordered


def test_a_folder_where_a_file_was_orders_everything_after_it() -> None:
    places = MemberPlaces(2)
    places.place(b"a", REG, False)
    assert places.place(b"a", DIR, False) == ORDERED
    assert places.all_ordered


def test_a_folder_met_twice_is_still_a_folder() -> None:
    places = MemberPlaces(2)
    assert places.place(b"a", DIR, False) == FOLDER
    assert places.place(b"a/f", REG, False) in (0, 1)
    assert places.place(b"a", DIR, False) == FOLDER
    assert not places.all_ordered
