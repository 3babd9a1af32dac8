"""Old deployment folders removed beside the deployment instead of in its way.

Retention removes a group's oldest deployment folders before each download. For a revision
of many files on a disk-backed root that removal takes seconds (20,000 small files: about
2 s on an ext4 filesystem with online discard, 0.09 s on tmpfs), paid before every
download once ``max_revisions`` is reached. With a :class:`DeploymentTrash`, a folder is
instead renamed into the root's ``deployment-trash`` folder (one rename: same filesystem)
and removed there by a child process at the lowest CPU priority while the deployment goes
on. The space it holds is needed back only when the filesystem is short of it: when the
usable free space (the margin of :mod:`agent.filesystem.free_space` kept) is less than
the folder holds, the folder is removed at once, as before. Whatever is left in the trash
(the program stopped first) is removed by the next program that starts emptying it.

The child is ``python -m agent.deployment_root.trash <trash folder>``: it removes every
entry of the folder, looks again for entries added meanwhile, and says in one line on
stderr what it could not remove.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, List, Optional, Set, Tuple, Type

import structlog

from agent.filesystem.free_space import measure_free_space_on_disk
from agent.filesystem.sparse_copy import held_bytes

log = structlog.get_logger(__name__)

TRASH_DIR = "deployment-trash"
_ErrorInfo = Tuple[Type[BaseException], BaseException, TracebackType]


class DeploymentTrash:
    """The trash folder of one deployment root and the child that empties it.

    One child at a time; its methods may be called from any thread. A program calls
    :meth:`start_emptying` when it starts (leftovers), :meth:`reap` now and then (the
    daemon, between commands) and :meth:`wait` before it exits when it must not leave the
    child behind (``codedeploy-local``).
    """

    def __init__(self, root_dir: Path, python: str = sys.executable) -> None:
        self.folder = root_dir / TRASH_DIR
        self._python = python
        self._lock = threading.Lock()
        self._child: Optional[subprocess.Popen[bytes]] = None
        self._again = False

    def retire_on_disk(self, deployment_folder: Path) -> bool:
        """Move ``deployment_folder`` into the trash and have it removed there; False
        (nothing moved) when the filesystem needs its space now or it cannot be moved."""
        if not _room_without_on_disk(deployment_folder):
            return False
        target = self.folder / f"{deployment_folder.name}.{secrets.token_hex(4)}"
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            os.rename(deployment_folder, target)
        except OSError as error:
            log.info(
                "old deployment folder cannot be moved to the trash",
                path=str(deployment_folder),
                reason=error.strerror or str(error),
            )
            return False
        self.start_emptying()
        return True

    def start_emptying(self) -> None:
        """Start the child unless one runs (it is then asked to look again once done)."""
        with self._lock:
            self._collect_locked()
            if self._child is not None:
                self._again = True
                return
            self._again = False
            if not _has_entries_on_disk(self.folder):
                return
            self._child = subprocess.Popen(
                [self._python, "-m", "agent.deployment_root.trash", str(self.folder)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
            log.info("removing old deployment folders", trash=str(self.folder))

    def reap(self) -> None:
        """Collect a child that has finished (and start another if asked meanwhile)."""
        with self._lock:
            self._collect_locked()
            again = self._child is None and self._again
        if again:
            self.start_emptying()

    def wait(self) -> None:
        """Return once nothing is left to remove (or the child said what it could not)."""
        while True:
            with self._lock:
                child = self._child
            if child is None:
                return
            child.wait()
            self.reap()

    def _collect_locked(self) -> None:
        child = self._child
        if child is None or child.poll() is None:
            return
        self._child = None
        said = child.stderr.read().decode("utf-8", "replace").strip() if child.stderr else ""
        if child.stderr:
            child.stderr.close()
        if child.returncode != 0:
            log.warning(
                "old deployment folders not all removed",
                trash=str(self.folder),
                status=child.returncode,
                problem=said.splitlines()[0] if said else "",
            )


def _room_without_on_disk(folder: Path) -> bool:
    """Whether the filesystem's usable free space is at least what ``folder`` holds. No
    folder holds more than the filesystem's files do in all, so the folder is walked (a
    stat of each of its files, slow when they are not cached) only when that bound fails."""
    space = measure_free_space_on_disk(folder.parent)
    if space.usable_bytes >= space.used_bytes:
        return True
    return space.usable_bytes >= held_bytes_on_disk(folder)


def held_bytes_on_disk(folder: Path) -> int:
    """What the files below ``folder`` hold on their filesystem, in bytes (whole blocks)."""
    held = 0
    pending = [str(folder)]
    while pending:
        try:
            listing = os.scandir(pending.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    held += held_bytes(entry.stat(follow_symlinks=False))
                except OSError:
                    continue
    return held


def _has_entries_on_disk(folder: Path) -> bool:
    try:
        with os.scandir(folder) as listing:
            return any(True for _ in listing)
    except FileNotFoundError:
        return False


def empty_trash_on_disk(folder: Path) -> List[str]:
    """Remove every entry of ``folder``, again while new ones appear; what could not be
    removed, one line per entry."""
    problems: List[str] = []
    given_up: Set[str] = set()
    while True:
        try:
            with os.scandir(folder) as listing:
                names = [entry.name for entry in listing if entry.name not in given_up]
        except FileNotFoundError:
            return problems
        if not names:
            return problems
        for name in names:
            problem = _remove_tree_on_disk(os.path.join(folder, name))
            if problem:
                given_up.add(name)
                problems.append(problem)


def _remove_tree_on_disk(path: str) -> str:
    """Remove ``path`` and all below it; "" or the first failure and how many there were."""
    failures: List[str] = []

    def note(_function: Callable[..., Any], where: str, info: _ErrorInfo) -> None:
        error = info[1]
        if not isinstance(error, FileNotFoundError):  # else removed meanwhile, by another
            failures.append(f"{where}: {getattr(error, 'strerror', None) or error}")

    shutil.rmtree(path, onerror=note)
    return f"{failures[0]} ({len(failures)} paths not removed)" if failures else ""


def _main(argv: List[str]) -> int:  # pragma: no cover - the child process
    """The child: lowest CPU priority, then the trash emptied."""
    with contextlib.suppress(OSError):
        os.nice(19)
    problems = empty_trash_on_disk(Path(argv[0]))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"{problems[0]}{more}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(_main(sys.argv[1:]))
