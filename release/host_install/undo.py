"""Putting the host back as it was when an install, upgrade or migration fails half-way.

Every step that changes the host records, before or as it changes it, how to take the change
back; when a later step fails, the recorded undos run newest first. An undo that itself
fails is logged and the others still run: the operator gets the first error, and the log
says what could not be put back. Files an install replaces are copied aside first (into a
folder of the journal's own, removed at the end), so an undo restores their bytes and mode.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Tuple

log = logging.getLogger("install")


class UndoJournal:
    def __init__(self) -> None:
        self._undos: List[Tuple[str, Callable[[], None]]] = []
        self._saved: Optional[Path] = None

    def record(self, what: str, undo: Callable[[], None]) -> None:
        self._undos.append((what, undo))

    def created_on_disk(self, path: Path) -> None:
        """``path`` did not exist and is about to be made: undo removes it."""
        self.record(f"remove {path}", lambda: remove_on_disk(path))

    def make_folders_on_disk(self, folder: Path, mode: int) -> None:
        """Create ``folder`` and its missing parents with ``mode``; undo removes the ones made."""
        missing: List[Path] = []
        probe = folder
        while not probe.exists() and not probe.is_symlink():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            self.created_on_disk(path)
            path.mkdir(mode=mode)
            os.chmod(path, mode)

    def replace_file_on_disk(self, path: Path, content: bytes, mode: int) -> bool:
        """Write ``path`` whole (temporary name, then rename); undo restores what was there.
        Returns False when the file already had exactly this content and mode."""
        if path.is_file() and not path.is_symlink():
            if path.read_bytes() == content and (path.stat().st_mode & 0o7777) == mode:
                return False
            saved = self._save_on_disk(path)
            self.record(f"restore {path}", lambda: _put_back_on_disk(saved, path))
        elif path.exists() or path.is_symlink():
            saved = self._save_on_disk(path)
            self.record(f"restore {path}", lambda: _put_back_on_disk(saved, path))
        else:
            self.created_on_disk(path)
        write_file_on_disk(path, content, mode)
        return True

    def move_aside_on_disk(self, path: Path, to: Path) -> None:
        """Move ``path`` to ``to`` (a file or link the host must stop seeing); undo moves it back."""
        to.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, to)
        self.record(f"move {to} back to {path}", lambda: os.replace(to, path))

    def point_link_on_disk(self, link: Path, target: Path) -> None:
        """Make ``link`` a symlink to ``target`` atomically; undo points it back (or removes it)."""
        before: Optional[str] = os.readlink(link) if link.is_symlink() else None
        if before is None and link.exists():
            raise FileExistsError(f"{link} exists and is not a symlink")
        if before == str(target):
            return
        set_link_on_disk(link, target)
        if before is None:
            self.record(f"remove {link}", lambda: remove_on_disk(link))
        else:
            old = Path(before)
            self.record(f"point {link} back to {old}", lambda: set_link_on_disk(link, old))

    def undo_all(self) -> List[str]:
        """Run every undo, newest first; returns what could not be put back."""
        failed: List[str] = []
        while self._undos:
            what, undo = self._undos.pop()
            try:
                undo()
                log.info("undone: %s", what)
            except Exception as error:  # keep undoing the rest
                log.error("could not %s: %s", what, error)
                failed.append(what)
        self.forget()
        return failed

    def forget(self) -> None:
        """The change is kept: drop the undos and the saved copies."""
        self._undos.clear()
        if self._saved is not None:
            shutil.rmtree(self._saved, ignore_errors=True)
            self._saved = None

    def _save_on_disk(self, path: Path) -> Path:
        if self._saved is None:
            self._saved = Path(tempfile.mkdtemp(prefix="codedeploy-install-undo."))
        saved = self._saved / str(len(list(self._saved.iterdir())))
        if path.is_symlink():
            os.symlink(os.readlink(path), saved)
        else:
            shutil.copy2(path, saved)
        return saved


def write_file_on_disk(path: Path, content: bytes, mode: int) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_link_on_disk(link: Path, target: Path) -> None:
    temporary = link.with_name(f".{link.name}.new")
    remove_on_disk(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def remove_on_disk(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _put_back_on_disk(saved: Path, path: Path) -> None:
    remove_on_disk(path)
    if saved.is_symlink():
        os.symlink(os.readlink(saved), path)
    else:
        shutil.copy2(saved, path)
