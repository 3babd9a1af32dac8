"""iter_zip_member_sizes: the central directory of real zips, read without unpacking."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import List, Tuple

from agent.revision.zip_directory import iter_zip_member_sizes


def sizes_of(path: Path) -> List[Tuple[int, bool]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(iter_zip_member_sizes(fd))
    finally:
        os.close(fd)


def test_every_member_and_folder_is_listed(tmp_path: Path) -> None:
    bundle = tmp_path / "many.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("folder/", b"")
        for index in range(3000):
            archive.writestr(f"folder/{index}.txt", b"x" * index)
    listed = sizes_of(bundle)
    assert listed[0] == (0, True)
    assert listed[1:] == [(index, False) for index in range(3000)]


def test_zip64_sizes_and_data_in_front_of_the_zip(tmp_path: Path) -> None:
    bundle = tmp_path / "zip64.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            member.write(bytes(5 << 20))
        archive.writestr("small.txt", b"abc")
    assert sizes_of(bundle) == [(5 << 20, False), (3, False)]
    prefixed = tmp_path / "self-extracting.zip"
    prefixed.write_bytes(b"#!/bin/sh\nexit 0\n" * 50 + bundle.read_bytes())
    assert sizes_of(prefixed) == [(5 << 20, False), (3, False)]


def test_something_that_is_not_a_zip_lists_nothing(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(os.urandom(10_000))
    assert sizes_of(garbage) == []
    truncated = tmp_path / "truncated.zip"
    with zipfile.ZipFile(truncated, "w") as archive:
        archive.writestr("a.txt", b"a" * 100)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) - 30])
    assert sizes_of(truncated) == []
