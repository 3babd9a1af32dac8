"""Opening installed folders again without following a symlink planted in their place.

The folders an install created can end up owned by an unprivileged user (``permissions``
with an ``owner``), who can then replace a sub-folder by a symlink to any folder of the
host. Whatever the agent does later to paths it created (the next install's cleanup
replay, reuse, copy and permissions) therefore goes through folder descriptors opened one
component at a time, from a folder the agent did not create:

- down to the first folder the agent created, symlinks are followed as path resolution
  does: a destination that was a symlink before the first install (``/var/www ->
  /srv/www``) is installed through as the AWS agent does;
- from there down, a component is opened with ``O_NOFOLLOW``. A symlink found where the
  agent made a folder is never followed (:class:`SymlinkNotFollowed`). A symlink the agent
  did not make is followed only when it belongs to the agent's own user: only root (or
  that user) can own such a link, so it was placed by the host's administrator (say a
  ``storage -> /efs/storage`` link kept across deployments), never by whoever owns the
  folder it is in. Its target is read from the link itself (``O_PATH``), so swapping the
  link meanwhile changes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable, Dict, Optional, Set, Type

from agent.installer.result import InstallError

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Folder descriptors cached by one walker; the cache starts over beyond this.
_MAX_OPEN = 128


class SymlinkNotFollowed(InstallError):
    """A symlink stands where a folder is needed and must not be followed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} is a symlink {reason}: not followed")
        self.path = path


def open_child_folder_on_disk(
    parent_fd: int,
    name: str,
    path: str,
    *,
    agent_made: bool,
    trusted_uid: Optional[int],
    parent_resolved: bool = False,
) -> int:
    """Open folder ``name`` of ``parent_fd`` (full path ``path``) without following a planted link.

    ``agent_made``: the agent created ``path`` as a folder. ``trusted_uid``: whose symlinks
    may be followed (None: nobody's). ``parent_resolved``: no folder the agent made lies on
    the way to the parent, so a folder it did not make is opened as path resolution would,
    symlinks followed. Raises SymlinkNotFollowed, or OSError as ``open``.
    """
    if parent_resolved and not agent_made:
        return os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
    try:
        return os.open(name, _FOLDER_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as error:
        # Linux answers ENOTDIR for a symlink opened with O_DIRECTORY | O_NOFOLLOW.
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        refused = error
    link_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        status = os.fstat(link_fd)
        if not stat.S_ISLNK(status.st_mode):
            raise refused
        if agent_made:
            raise SymlinkNotFollowed(path, "where this agent made a folder") from None
        if trusted_uid is None or status.st_uid != trusted_uid:
            raise SymlinkNotFollowed(
                path, f"owned by uid {status.st_uid}, below a folder this agent made"
            ) from None
        target = os.readlink("", dir_fd=link_fd)
    finally:
        os.close(link_fd)
    # An absolute target ignores dir_fd; a relative one starts in the link's folder.
    return os.open(target, _FOLDER_FLAGS, dir_fd=parent_fd)


class FolderWalker:
    """Opens folders by path as described above, caching their descriptors.

    ``agent_made`` tells whether the agent created a path (from its cleanup file or plan).
    One walker per thread; descriptors it returns stay its own.
    """

    def __init__(self, agent_made: Callable[[str], bool], trusted_uid: Optional[int]) -> None:
        self._agent_made = agent_made
        self._trusted_uid = trusted_uid
        self._fds: Dict[str, int] = {}
        # Folders reached with no agent-made folder on the way: their symlinks are followed.
        self._resolved: Set[str] = set()

    def open_folder_on_disk(self, path: str) -> int:
        """A descriptor of the folder ``path`` (absolute, normalised); OSError or
        SymlinkNotFollowed when it cannot be reached safely."""
        fd = self._fds.get(path)
        if fd is not None:
            return fd
        if len(self._fds) >= _MAX_OPEN:
            self.close()
        if path == "/":
            fd = os.open("/", _FOLDER_FLAGS)
            self._resolved.add(path)
        else:
            parent, name = os.path.split(path)
            parent_fd = self.open_folder_on_disk(parent)
            agent_made = self._agent_made(path)
            parent_resolved = parent in self._resolved
            fd = open_child_folder_on_disk(
                parent_fd,
                name,
                path,
                agent_made=agent_made,
                trusted_uid=self._trusted_uid,
                parent_resolved=parent_resolved,
            )
            if parent_resolved and not agent_made:
                self._resolved.add(path)
        self._fds[path] = fd
        return fd

    def forget(self, path: str) -> None:
        """``path`` was removed: drop its descriptor."""
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)
        self._resolved.discard(path)

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        self._resolved = set()
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> FolderWalker:
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: object, trace: object) -> None:
        self.close()
