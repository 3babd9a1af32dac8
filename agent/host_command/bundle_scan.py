"""Reading a bundle through without writing anything: what DownloadBundle would find.

``codedeploy-local`` checks a local archive before the first command, so that a bundle
of the wrong type, a truncated one, a refused member or a missing hook script is found
before ApplicationStop stops the running application. One streaming pass reads every
member header (data is skipped, except the appspec's), applies the unpacker's checks on
the declared type, names, kinds, modes and sizes, and keeps an index of the member
paths: files and folders as 8-byte hashes in sorted arrays (a million members cost 16 MB,
not a list of names), symbolic links with their targets, so a hook script's path can be
followed inside the archive exactly as it will be on disk. A hash collision could only
make the pre-flight miss a missing script, which the hook run still reports.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import os
import stat
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Set, Tuple

from libarchive import ffi
from libarchive.exception import ArchiveError

from agent.application_specification.model import AppSpecError
from agent.deployment_specification.model import BundleType
from agent.host_command import libarchive_calls as la
from agent.host_command.bundle import (
    BundleError,
    SizeBudget,
    UnpackPolicy,
    check_member_kind,
    check_member_permissions,
    relative_member_name,
    show_name,
)
from agent.host_command.unpack import (
    corrupt_bundle_error,
    open_bundle_file,
    open_bundle_reader,
    read_first_bundle_header,
)

# No appspec is this large; a member that is cannot be one we would parse.
MAX_APPSPEC_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BundleScan:
    """What one pass over a bundle found: its appspec and the paths of its members.

    ``root`` is the member folder that becomes the revision root (``b""``, or the single
    top-level folder holding the appspec). Paths in the index are member paths.
    """

    appspec_member: str
    appspec: bytes
    root: bytes
    files: array[int]  # sorted hashes of member paths
    folders: array[int]
    symlinks: Dict[bytes, bytes] = field(default_factory=dict)

    def kind_of(self, revision_path: bytes) -> Tuple[Optional[int], bytes]:
        """(``S_IFREG``, ``S_IFDIR``, ``S_IFLNK`` or None, the link target) of a path
        relative to the revision root."""
        member = self.root + b"/" + revision_path if self.root else revision_path
        target = self.symlinks.get(member)
        if target is not None:
            return stat.S_IFLNK, target
        value = hash(member)
        if _contains(self.files, value):
            return stat.S_IFREG, b""
        if _contains(self.folders, value):
            return stat.S_IFDIR, b""
        return None, b""


def _contains(values: array[int], value: int) -> bool:
    index = bisect.bisect_left(values, value)
    return index < len(values) and values[index] == value


class _Appspecs:
    """The appspec candidates met so far, chosen as the unpacker chooses the revision root."""

    def __init__(self, names: Tuple[str, ...]) -> None:
        self.names = tuple(os.fsencode(n) for n in names)
        self.top_level: Set[bytes] = set()
        self.found: Dict[Tuple[bytes, ...], bytes] = {}

    def choose(self, bundle: Path) -> Tuple[bytes, bytes, bytes]:
        """(root, member name, content) of the appspec the revision will use."""
        for name in self.names:
            if (name,) in self.found:
                return b"", name, self.found[(name,)]
        if len(self.top_level) == 1:
            (top,) = self.top_level
            for name in self.names:
                if (top, name) in self.found:
                    return top, top + b"/" + name, self.found[(top, name)]
        shown = " or ".join(os.fsdecode(n) for n in self.names)
        raise AppSpecError(f"bundle {bundle} has no {shown} at its top level")


def scan_bundle_on_disk(
    bundle: Path, bundle_type: BundleType, appspec_names: Tuple[str, ...], policy: UnpackPolicy
) -> BundleScan:
    """Read ``bundle`` through as DownloadBundle would unpack it, writing nothing.

    Raises :class:`BundleError` for whatever the unpacker would refuse from the headers
    alone (wrong type, truncated or corrupt archive, a refused member, too many bytes),
    and AppSpecError when no appspec named ``appspec_names`` is where the unpacker looks.
    """
    where = f"bundle {bundle}"
    fd = open_bundle_file(bundle, bundle_type, where)
    read_p = ffi.read_new()
    entry_p = ffi.entry_new()
    try:
        open_bundle_reader(read_p, fd, bundle_type, where)
        status = read_first_bundle_header(read_p, entry_p, bundle_type, where)
        return _Scan(read_p, entry_p, where, policy, appspec_names).run(status, bundle)
    except ArchiveError as error:
        raise BundleError(f"cannot read {where}: libarchive failed: {error.msg}") from None
    finally:
        ffi.entry_free(entry_p)
        with contextlib.suppress(ArchiveError):
            ffi.read_free(read_p)
        os.close(fd)


class _Scan:
    def __init__(
        self,
        read_p: int,
        entry_p: int,
        where: str,
        policy: UnpackPolicy,
        appspec_names: Tuple[str, ...],
    ) -> None:
        self.read_p = read_p
        self.entry_p = entry_p
        self.where = where
        self.policy = policy
        self.appspecs = _Appspecs(appspec_names)
        self.files: array[int] = array("q")
        self.folders: array[int] = array("q")
        self.symlinks: Dict[bytes, bytes] = {}

    def run(self, status: int, bundle: Path) -> BundleScan:
        # The hot loop: everything it calls per member is bound to a local name first.
        read_p, entry_p, where, policy = self.read_p, self.entry_p, self.where, self.policy
        budget = SizeBudget(policy.max_extraction_size, where)
        limited = policy.max_extraction_size is not None
        check_modes = policy.reject_unsafe_permissions
        eof, warn = la.ARCHIVE_EOF, la.ARCHIVE_WARN
        regular, folder, symlink = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
        read_next_header2 = la.read_next_header2
        entry_pathname, entry_filetype, entry_hardlink = (
            ffi.entry_pathname,
            ffi.entry_filetype,
            ffi.entry_hardlink,
        )
        add_file, add_folder = self.files.append, self.folders.append
        symlinks, top_level = self.symlinks, self.appspecs.top_level
        appspec_names = self.appspecs.names
        last_parent = None
        while status != eof:
            name: bytes = entry_pathname(entry_p)
            if status < warn:
                raise corrupt_bundle_error(read_p, where, name)
            relative = relative_member_name(name, where)
            file_type = entry_filetype(entry_p)
            hardlink: Optional[bytes] = entry_hardlink(entry_p)
            target: Optional[bytes] = None
            if hardlink is not None:
                linked = relative_member_name(hardlink, where)
                if not linked:
                    raise BundleError(
                        f"{where}: member {show_name(name)} is a hard link to no file"
                    )
                # A hard link to a symlink is a symlink too.
                target = symlinks.get(linked)
                file_type = regular if target is None else symlink
            elif file_type == symlink:
                check_member_kind(file_type, name, where, policy)
                target = ffi.entry_symlink(entry_p) or b""
            elif file_type != regular and file_type != folder:
                check_member_kind(file_type, name, where, policy)
            if not relative:
                if file_type != folder:
                    raise BundleError(f"{where}: member {show_name(name)} names no file")
                status = read_next_header2(read_p, entry_p)
                continue
            if check_modes:
                check_member_permissions(file_type, ffi.entry_perm(entry_p), name, where, policy)
            parent, _, base = relative.rpartition(b"/")
            if parent != last_parent:
                top_level.add(relative.partition(b"/")[0])
                self._add_folders(parent)
                last_parent = parent
            elif not parent:
                top_level.add(relative)
            if symlinks:
                symlinks.pop(relative, None)
            if file_type == folder:
                add_folder(hash(relative))
            elif target is not None:
                symlinks[relative] = target
            else:
                add_file(hash(relative))
                if limited and ffi.entry_size_is_set(entry_p):
                    budget.declare(ffi.entry_size(entry_p), name)
                if base in appspec_names and hardlink is None and parent.count(b"/") == 0:
                    self._read_appspec((parent, base) if parent else (base,), name)
            status = read_next_header2(read_p, entry_p)
        root, member, content = self.appspecs.choose(bundle)
        return BundleScan(
            appspec_member=os.fsdecode(member),
            appspec=content,
            root=root,
            files=array("q", sorted(self.files)),
            folders=array("q", sorted(self.folders)),
            symlinks=symlinks,
        )

    def _add_folders(self, parent: bytes) -> None:
        # Archives often leave out folder members; a member's parents are folders anyway.
        while parent:
            self.folders.append(hash(parent))
            parent = parent.rpartition(b"/")[0]

    def _read_appspec(self, parts: Tuple[bytes, ...], name: bytes) -> None:
        if (ffi.entry_size(self.entry_p) or 0) > MAX_APPSPEC_BYTES:
            return
        buffer, size, offset = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_int64()
        chunks = []
        total = 0
        while True:
            status = la.read_data_block(
                self.read_p, ctypes.byref(buffer), ctypes.byref(size), ctypes.byref(offset)
            )
            if status == la.ARCHIVE_EOF:
                break
            if status < la.ARCHIVE_WARN:
                raise corrupt_bundle_error(self.read_p, self.where, name)
            total += size.value
            if total > MAX_APPSPEC_BYTES:
                return
            chunks.append(ctypes.string_at(buffer, size.value) if size.value else b"")
        self.appspecs.found[parts] = b"".join(chunks)
