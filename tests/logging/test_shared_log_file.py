"""The shared, size-rotated log files: the deployments log and codedeploy-local.log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from agent.logging.shared_log_file import LogRotation, SharedLogFile, rotated_log_name
from tests.support.checkout import REPO


def _log_files(path: Path) -> List[Path]:
    return sorted(path.parent.glob(path.name + "*"))


def test_rotation_keeps_the_newest_files_under_the_aws_names(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "deployments.log"
    log = SharedLogFile(path, LogRotation(max_bytes=100, files=4))
    lines = [f"line {number:03d} " + "x" * 30 + "\n" for number in range(40)]
    for line in lines:
        log.write(line)
    log.close()

    # The current file and three older ones, named as the AWS agent's Ruby Logger names them.
    assert [p.name for p in _log_files(path)] == [
        "deployments.log",
        "deployments.log.0",
        "deployments.log.1",
        "deployments.log.2",
    ]
    newest_first = [path] + [rotated_log_name(path, n) for n in range(3)]
    kept = "".join(p.read_text() for p in reversed(newest_first))
    # Nothing but whole lines, in order, and the newest ones.
    assert kept == "".join(lines[-len(kept.splitlines()) :])
    assert lines[-1] in path.read_text()
    assert all(p.stat().st_size <= 100 for p in newest_first)


def test_a_line_longer_than_the_limit_still_goes_in_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    log = SharedLogFile(path, LogRotation(max_bytes=10, files=2))
    log.write("a" * 50 + "\n")
    log.write("b" * 50 + "\n")
    log.close()
    assert path.read_text() == "b" * 50 + "\n"
    assert rotated_log_name(path, 0).read_text() == "a" * 50 + "\n"


WRITER = """
import sys
from pathlib import Path
from agent.logging.shared_log_file import LogRotation, SharedLogFile
log = SharedLogFile(Path(sys.argv[1]), LogRotation(max_bytes=4000, files=200))
for number in range(int(sys.argv[3])):
    log.write(f"{sys.argv[2]} {number} " + "y" * 40 + "\\n")
log.close()
"""


def test_processes_appending_at_once_lose_and_mix_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    count = 3000
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(count)], cwd=REPO)
        for tag in ("first", "second", "third")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    files = _log_files(path)
    assert len(files) > 10  # it did rotate, many times, under three writers
    seen = [line for p in files for line in p.read_text().splitlines()]
    for tag in ("first", "second", "third"):
        mine = sorted(int(line.split()[1]) for line in seen if line.startswith(tag + " "))
        assert mine == list(range(count))
    assert all(line.endswith(" " + "y" * 40) for line in seen)
    # Each writer looks at the real size every 4000 / 16 bytes of its own at least.
    assert all(p.stat().st_size <= 4000 + 3 * (4000 // 16 + 60) for p in files)
    assert len(files) < 200  # nothing was dropped


def test_a_rotation_needs_a_size_and_a_file() -> None:
    with pytest.raises(ValueError):
        LogRotation(max_bytes=0)


def test_a_log_that_is_a_symlink_is_written_through_and_rotated(tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-disk" / "deployments.log"
    elsewhere.parent.mkdir()
    elsewhere.write_text("old line\n")
    path = tmp_path / "logs" / "deployments.log"
    path.parent.mkdir()
    path.symlink_to(elsewhere)
    log = SharedLogFile(path, LogRotation(max_bytes=30, files=3))
    log.write("first new line\n")
    log.write("second new line\n")
    log.close()
    assert elsewhere.read_text() == "old line\nfirst new line\n"
    assert rotated_log_name(path, 0).is_symlink()
    assert path.read_text() == "second new line\n"
