"""The cleanup file on its own: reading it backwards, hashing its paths, replaying it."""

from __future__ import annotations

import os
import random
from pathlib import Path

from agent.installer.cleanup import (
    CleanupFileWriter,
    PathSet,
    PathSetBuilder,
    iter_complete_lines_reversed_from_disk,
    iter_recorded_paths_from_disk,
    read_previous_install_from_disk,
    replay_cleanup_file_on_disk,
)

KEY = b"k" * 16


def test_reversed_lines_across_many_blocks(tmp_path: Path) -> None:
    lines = [f"/srv/app/{'x' * (n % 300)}/{n}".encode() for n in range(20_000)]
    listing = tmp_path / "cleanup"
    listing.write_bytes(b"\n".join(lines) + b"\n")
    assert list(iter_complete_lines_reversed_from_disk(listing)) == lines[::-1]


def test_reversed_lines_ignore_an_unfinished_last_line(tmp_path: Path) -> None:
    listing = tmp_path / "cleanup"
    listing.write_bytes(b"/a\n/b\n/half-writ")
    assert list(iter_complete_lines_reversed_from_disk(listing)) == [b"/b", b"/a"]
    listing.write_bytes(b"/only-half")
    assert list(iter_complete_lines_reversed_from_disk(listing)) == []
    listing.write_bytes(b"")
    assert list(iter_complete_lines_reversed_from_disk(listing)) == []


def test_path_set_spanning_several_sorted_chunks() -> None:
    builder = PathSetBuilder(KEY)
    for n in range(150_000):
        builder.add(f"/srv/{n}")
    paths = builder.build()
    assert len(paths) == 150_000
    assert list(paths.hashes) == sorted(paths.hashes)
    assert all(f"/srv/{n}" in paths for n in range(0, 150_000, 997))
    assert not any(f"/srv/{n}" in paths for n in range(150_000, 151_000))


def test_previous_install_skips_unfinished_lines_and_notes_contexts(tmp_path: Path) -> None:
    listing = tmp_path / "cleanup"
    listing.write_bytes(b"/a\nsemanage\0/a\n/b\n/c")
    previous = read_previous_install_from_disk(listing, KEY)
    assert ("/a" in previous.free, "/b" in previous.free, "/c" in previous.free) == (
        True,
        True,
        False,
    )
    assert previous.has_contexts
    missing = read_previous_install_from_disk(tmp_path / "none", KEY)
    assert len(missing.free) == 0 and not missing.has_contexts


def _listed(listing: Path) -> PathSet:
    return read_previous_install_from_disk(listing, KEY).free


def test_replay_with_everything_kept_leaves_the_file_and_the_tree(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "one").write_text("one", encoding="utf-8")
    listing = tmp_path / "cleanup"
    content = os.fsencode(app) + b"\n" + os.fsencode(app / "one") + b"\n"
    listing.write_bytes(content)
    kept = PathSetBuilder(KEY)
    kept.add(str(app / "one"))
    kept.add(str(app))
    everything = kept.build()
    assert (
        replay_cleanup_file_on_disk(listing, None, everything, _listed(listing), os.geteuid()) == 0
    )
    assert listing.read_bytes() == content
    assert (app / "one").exists()
    # An interrupted last line must not be extended by the next append: rewritten instead.
    listing.write_bytes(content + os.fsencode(app / "par"))
    assert (
        replay_cleanup_file_on_disk(listing, None, everything, _listed(listing), os.geteuid()) == 0
    )
    assert listing.read_bytes() == content


def test_replay_removes_newest_first_and_spares_what_is_kept(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    for name in ("one", "two", "sub/three"):
        (app / name).write_text(name, encoding="utf-8")
    os.symlink("one", app / "link")
    listing = tmp_path / "cleanup"
    paths = [app, app / "one", app / "two", app / "sub", app / "sub/three", app / "link"]
    relative = tmp_path / "relative-victim"
    relative.write_text("must survive", encoding="utf-8")
    listing.write_bytes(
        b"".join(os.fsencode(p) + b"\n" for p in paths)
        + b"relative-victim\n"
        + os.fsencode(tmp_path / "not-there")
        + b"\n"
    )
    kept = PathSetBuilder(KEY)
    kept.add(str(app))
    kept.add(str(app / "two"))

    removed = replay_cleanup_file_on_disk(
        listing, None, kept.build(), _listed(listing), os.geteuid()
    )

    assert removed == 4
    assert sorted(p.name for p in app.iterdir()) == ["two"]
    assert relative.exists()
    # What was kept stays listed, in its original order, for the next install to append to.
    assert listing.read_bytes() == os.fsencode(app) + b"\n" + os.fsencode(app / "two") + b"\n"


def test_replay_without_kept_paths_deletes_the_file(tmp_path: Path) -> None:
    listing = tmp_path / "cleanup"
    listing.write_bytes(os.fsencode(tmp_path / "gone") + b"\n")
    assert (
        replay_cleanup_file_on_disk(
            listing, None, PathSetBuilder(KEY).build(), _listed(listing), os.geteuid()
        )
        == 0
    )
    assert not listing.exists()
    assert (
        replay_cleanup_file_on_disk(
            listing, None, PathSetBuilder(KEY).build(), _listed(listing), os.geteuid()
        )
        == 0
    )


def test_writer_appends_each_record_at_once_and_reads_back(tmp_path: Path) -> None:
    listing = tmp_path / "cleanup"
    listing.write_bytes(b"/kept\n")
    with CleanupFileWriter(listing) as writer:
        assert writer.size == 6
        writer.append_path("/new/one")
        # Visible to another reader before the writer is closed: a crash loses nothing.
        assert listing.read_bytes() == b"/kept\n/new/one\n"
        end = writer.size
        writer.append_context_record("/new/one")
    assert listing.read_bytes() == b"/kept\n/new/one\nsemanage\0/new/one\n"
    assert list(iter_recorded_paths_from_disk(listing, end)) == ["/kept", "/new/one"]


def test_replay_of_a_deep_tree_spanning_several_windows(tmp_path: Path) -> None:
    # Files and folders interleaved in creation order, far more than one window of lines:
    # every folder must be empty by the time its line comes.
    chooser = random.Random(7)
    top = tmp_path / "top"
    top.mkdir()
    created, folders = [top], [top]
    for n in range(9000):
        parent = chooser.choice(folders)
        path = parent / f"{'d' if n % 5 == 0 else 'f'}{n}"
        if n % 5 == 0:
            path.mkdir()
            folders.append(path)
        else:
            path.write_bytes(b"x")
        created.append(path)
    listing = tmp_path / "cleanup"
    listing.write_bytes(b"".join(os.fsencode(p) + b"\n" for p in created))

    assert (
        replay_cleanup_file_on_disk(
            listing, None, PathSetBuilder(KEY).build(), _listed(listing), os.geteuid()
        )
        == 9001
    )
    assert not top.exists()
