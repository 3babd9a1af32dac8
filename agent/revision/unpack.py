"""Unpacking a tar, tgz or zip bundle into ``deployment-archive/``, safely and fast.

libarchive (through libarchive-c) reads the bundle and writes it to disk entry by entry,
streaming, in one code path for the three types. Every member is judged in Python before
its header is written (see :mod:`agent.revision.bundle`): nothing may land outside
the archive folder, and the policy may refuse symlinks, unsafe modes or too many bytes.
libarchive's own secure-extraction flags are the second line of defence: no ``..``
always, and no writing through a symlink as soon as the archive has created one.

The process's working directory is shared by every thread, so it is never changed:
each member's name is rewritten to an absolute path inside the destination once it has
been validated. Modes and mtimes are kept (scripts stay executable); archive owners are
applied only when the policy asks.

A bundle file of many small members is unpacked by two processes at once when this one
runs a single thread (``codedeploy-local``, the install's helper) on a machine with two
cores or more: each reads and judges every member, and writes its share of them (see
:mod:`agent.revision.member_shares`). One process alone writes a member in about 9
microseconds, most of it libarchive's and the kernel's work that a thread of the same
process could not share.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Set, Union

import structlog
from libarchive import ffi
from libarchive.exception import ArchiveError
from libarchive.extract import (
    EXTRACT_OWNER,
    EXTRACT_PERM,
    EXTRACT_SECURE_NODOTDOT,
    EXTRACT_SECURE_SYMLINKS,
    EXTRACT_TIME,
)

from agent.application_specification.model import DEFAULT_APPSPEC_FILENAME, appspec_file_names
from agent.deployment_specification.model import BundleType
from agent.filesystem.free_space import SpaceClaim, measure_free_space_on_disk
from agent.forked_share import (
    ForkedShare,
    Progress,
    abandon_share,
    collect_share,
    fork_is_safe,
    start_share_in_child,
    wait_for_progress,
)
from agent.process_control import usable_cores
from agent.revision import libarchive_calls as la
from agent.revision.archive_staging import (
    build_archive_dir_on_disk,
    describe_os_error,
    is_disk_full,
)
from agent.revision.bundle import (
    DEFAULT_POLICY,
    SizeBudget,
    UnpackPolicy,
    check_member_kind,
    check_member_permissions,
    relative_member_name,
    show_name,
)
from agent.revision.errors import BundleError
from agent.revision.gunzip_feed import GunzipFeed, inflating_apart_pays
from agent.revision.member_shares import FOLDER, ORDERED, MemberPlaces
from agent.revision.zip_directory import iter_zip_member_sizes

log = structlog.get_logger(__name__)

# Only the formats and filters a bundle can be. Leaving out the rest of libarchive's
# readers (cpio, iso9660, rar, mtree, ...) and its external-program filters keeps code
# that no bundle needs away from untrusted input.
_READ_FORMATS = ("tar", "zip")
_READ_FILTERS = ("gzip", "bzip2", "xz", "lzma", "zstd", "compress")
_READ_BLOCK_SIZE = 1 << 20
# The bundle types that can be unpacked as they are read, in one pass: a zip's directory
# is at its end.
STREAMED_TYPES = (BundleType.TAR, BundleType.TGZ)

# EXTRACT_SECURE_NOABSOLUTEPATHS is left out on purpose: every name handed to libarchive
# is absolute after the rewrite, and absolute member names are refused before that.
_EXTRACT_FLAGS = EXTRACT_PERM | EXTRACT_TIME | EXTRACT_SECURE_NODOTDOT
# Added from the archive's first symlink on. Until then the fresh private folder holds no
# symlink for it to find, and it is the costliest step of a write: it inspects every
# component of the absolute path, from /, for every member (a third of the time).
_SYMLINK_CHECK = EXTRACT_SECURE_SYMLINKS
# Members at least this large are asked for their sparse map: below it, counting a
# member's holes as data changes nothing that matters, and costs no call per member.
_SPARSE_CHECK_MIN = 1 << 20
# The unpack shared between processes: at most this many (measured on two cores), and
# only once this many members are read, when they average no more than SMALL_MEMBER_BYTES
# of the archive's data each. Fewer members do not repay the fork; big members are
# written at the disk's speed by one process, and each process reads the whole archive.
MAX_SHARES = 2
SHARE_AFTER_MEMBERS = 512
SMALL_MEMBER_BYTES = 64 << 10
# Before a tgz's unpack starts, its first members are looked at within this much data.
PRESCAN_BYTES = 8 << 20
_WORKER_NAME = "the unpack's second process"


def unpack_bundle_to_disk(
    bundle: Path,
    bundle_type: BundleType,
    archive_dir: Path,
    *,
    appspec_filename: str = DEFAULT_APPSPEC_FILENAME,
    policy: UnpackPolicy = DEFAULT_POLICY,
    shown_as: Optional[Path] = None,
) -> None:
    """Unpack ``bundle`` (a tar, tgz or zip) into ``archive_dir``, all or nothing.

    A stale ``archive_dir`` is removed first. When the archive's top level is a single
    folder holding the appspec file (and no appspec beside it), that folder becomes
    ``archive_dir``. Any failure raises :class:`BundleError` and leaves no folder behind;
    its message names the bundle ``shown_as`` (default: ``bundle``), such as the file a
    user gave when ``bundle`` is its hard link.
    """
    if bundle_type is BundleType.DIRECTORY:
        raise BundleError(
            f"bundle {bundle}: the bundle type directory is a folder to copy, not an archive"
        )
    where = f"bundle {bundle if shown_as is None else shown_as}"
    _unpack_to_disk(bundle, bundle_type, archive_dir, where, appspec_filename, policy)


def unpack_bundle_stream_to_disk(
    fd: int,
    bundle_type: BundleType,
    archive_dir: Path,
    *,
    where: str,
    appspec_filename: str = DEFAULT_APPSPEC_FILENAME,
    policy: UnpackPolicy = DEFAULT_POLICY,
) -> None:
    """Unpack the tar or tgz read from ``fd`` (a pipe: read once, in order) into
    ``archive_dir``, as :func:`unpack_bundle_to_disk` does; messages name ``where``."""
    if bundle_type not in STREAMED_TYPES:
        raise BundleError(f"{where}: only a tar or tgz bundle can be unpacked as it arrives")
    _unpack_to_disk(fd, bundle_type, archive_dir, where, appspec_filename, policy)


def _unpack_to_disk(
    source: Union[Path, int],
    bundle_type: BundleType,
    archive_dir: Path,
    where: str,
    appspec_filename: str,
    policy: UnpackPolicy,
) -> None:
    """Unpack the bundle file ``source``, or what its descriptor reads, into ``archive_dir``."""

    def fill(destination: Path) -> None:
        if isinstance(source, int):
            _extract_fd_on_disk(source, bundle_type, destination, archive_dir, policy, where)
            return
        fd = _open_bundle_file(source, bundle_type, where)
        try:
            if bundle_type is BundleType.ZIP:
                _check_zip_fits_on_disk(fd, destination, archive_dir, where)
            shares = _shares_available()
            if shares > 1 and _many_small_members_on_disk(fd, bundle_type, where):
                # Each process inflates the whole archive itself: no thread to inflate it.
                _extract_fd_on_disk(
                    fd, bundle_type, destination, archive_dir, policy, where, shares=shares
                )
            elif bundle_type is BundleType.TGZ and inflating_apart_pays(fd):
                _extract_inflated_apart_on_disk(fd, destination, archive_dir, policy, where)
            else:
                _extract_fd_on_disk(fd, bundle_type, destination, archive_dir, policy, where)
        finally:
            os.close(fd)

    build_archive_dir_on_disk(archive_dir, fill, appspec_names=appspec_file_names(appspec_filename))


def _shares_available() -> int:
    """How many processes may share an unpack here: this process must be able to fork."""
    if not fork_is_safe():
        return 1
    return max(1, min(MAX_SHARES, usable_cores()))


def _many_small_members_on_disk(fd: int, bundle_type: BundleType, where: str) -> bool:
    """Whether the bundle file ``fd`` starts with SHARE_AFTER_MEMBERS members within
    PRESCAN_BYTES of data: the unpack is then shared (see _Extraction._share_from), else a
    large tgz is inflated by a thread. Reads headers only (the data it steps over, at most
    PRESCAN_BYTES, is inflated for a tgz), and leaves ``fd`` at its start."""
    read_p = ffi.read_new()
    entry_p = ffi.entry_new()
    try:
        _open_bundle_reader(read_p, fd, bundle_type, where)
        for _ in range(SHARE_AFTER_MEMBERS):
            if la.read_next_header2(read_p, entry_p) != la.ARCHIVE_OK:
                return False
            # Checked before the next header is read, which steps over this member's data.
            if la.filter_bytes(read_p, 0) + ffi.entry_size(entry_p) > PRESCAN_BYTES:
                return False
        return True
    except (BundleError, ArchiveError):
        return False  # the unpack itself reports what is wrong with the bundle
    finally:
        ffi.entry_free(entry_p)
        _free_quietly(ffi.read_free, read_p)
        os.lseek(fd, 0, os.SEEK_SET)


def _open_bundle_file(bundle: Path, bundle_type: BundleType, where: str) -> int:
    """A descriptor of the bundle file; refuses anything but a non-empty regular file."""
    try:
        fd = os.open(bundle, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise BundleError(f"cannot open {where}: {describe_os_error(error)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{where} is not a regular file")
        if info.st_size == 0:
            raise BundleError(f"{where} is empty (0 bytes), not a {bundle_type.value} archive")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_zip_fits_on_disk(fd: int, destination: Path, archive_dir: Path, where: str) -> None:
    """Refuse a zip whose central directory says it will not fit, before writing anything.

    Members whose local headers claim other sizes than the central directory are still
    bounded while unpacking.
    """
    room = SpaceClaim(measure_free_space_on_disk(destination))
    for size, is_folder in iter_zip_member_sizes(fd):
        room.claim(1 if is_folder else size)
    if not room.fits():
        raise BundleError(room.shortfall(f"{where}, unpacked into {archive_dir},"))


def _extract_inflated_apart_on_disk(
    fd: int, destination: Path, archive_dir: Path, policy: UnpackPolicy, where: str
) -> None:
    """Unpack the tgz file ``fd``, inflated by a thread of its own (see
    :mod:`agent.revision.gunzip_feed`); a failure of the gzip data is the one reported."""
    feed = GunzipFeed(fd)
    read_end = feed.start()
    failure: Optional[str] = None
    try:
        _extract_fd_on_disk(
            read_end, BundleType.TGZ, destination, archive_dir, policy, where, compression="gzip"
        )
    except BundleError:
        # What libarchive met may be only the end of a stream the thread cut short.
        failure = feed.failure
        if failure is None:
            raise
    finally:
        # Taken before the thread stops: what it would meet from now on lies after the
        # archive's end, which libarchive would not have read either.
        failure = failure or feed.failure
        feed.stop()
    if failure is not None:
        raise BundleError(f"{where} is truncated or corrupt: {failure}")


def _extract_fd_on_disk(
    fd: int,
    bundle_type: BundleType,
    destination: Path,
    archive_dir: Path,
    policy: UnpackPolicy,
    where: str,
    compression: str = "",
    shares: int = 1,
) -> None:
    """Unpack the archive ``fd`` reads into ``destination``; ``compression`` names the one
    taken off before libarchive reads it, if any. ``shares`` above 1: ``fd`` is a bundle
    file that that many processes (forked from this one) may share, each reading it on its
    own."""
    # Both handles are freed by hand rather than by libarchive-c's context managers: their
    # free() reports a failed archive as a new error, which would hide the real one.
    read_p = ffi.read_new()
    write_p: Optional[int] = None
    try:
        _open_bundle_reader(read_p, fd, bundle_type, where)
        write_p = ffi.write_disk_new()
        flags = _EXTRACT_FLAGS | (EXTRACT_OWNER if policy.apply_ownership else 0)
        ffi.write_disk_set_options(write_p, flags)
        if policy.apply_ownership:
            # Owners and groups are looked up by name first, as tar does.
            la.write_disk_set_standard_lookup(write_p)
        extraction = _Extraction(
            read_p,
            write_p,
            flags,
            bundle_type,
            destination,
            archive_dir,
            policy,
            where,
            compression,
        )
        if shares > 1:
            extraction.places = MemberPlaces(shares)
            extraction.bundle_fd = fd
        extraction.run()
    except ArchiveError as error:
        # Only the setup calls made through libarchive-c raise; libarchive out of memory.
        raise BundleError(f"cannot unpack {where}: libarchive failed: {error.msg}") from None
    finally:
        if write_p is not None:
            _free_quietly(ffi.write_free, write_p)
        _free_quietly(ffi.read_free, read_p)


def _open_bundle_reader(read_p: int, fd: int, bundle_type: BundleType, where: str) -> None:
    """Open the reader ``read_p`` (from ``ffi.read_new``) on ``fd`` for the formats and
    filters a bundle can be; raises BundleError when the first block fits none."""
    for name in _READ_FILTERS:
        _enable_filter_if_built(read_p, name)
    for name in _READ_FORMATS:
        ffi.get_read_format_function(name)(read_p)
    # Opening reads the first block to recognise the format and compression.
    if la.read_open_fd(read_p, fd, _READ_BLOCK_SIZE) < la.ARCHIVE_WARN:
        raise _unreadable(where, bundle_type, read_p)


def _read_first_bundle_header(
    read_p: int, entry_p: int, bundle_type: BundleType, where: str, compression: str = ""
) -> int:
    """Read the first member's header and check the bundle's real format against
    ``bundle_type`` (known only from then on); returns libarchive's status."""
    status = int(la.read_next_header2(read_p, entry_p))
    if status < la.ARCHIVE_WARN:
        raise _unreadable(where, bundle_type, read_p)
    _check_declared_bundle_type(read_p, bundle_type, where, compression)
    return status


def _check_declared_bundle_type(
    read_p: int, bundle_type: BundleType, where: str, compression: str = ""
) -> None:
    """Refuse a bundle whose real format is not what its declared type says;
    ``compression`` names the one taken off before libarchive read it, if any."""
    family = la.archive_format(read_p) & la.FORMAT_FAMILY_MASK
    compressed = ffi.filter_count(read_p) > 1 or bool(compression)
    if bundle_type is BundleType.ZIP:
        matches = family == la.FORMAT_ZIP and not compressed
    else:
        # GNU tar, which the AWS agent runs, recognises any compression for both.
        matches = family == la.FORMAT_TAR
    if matches:
        return
    found = {la.FORMAT_TAR: "a tar archive", la.FORMAT_ZIP: "a zip archive"}.get(
        family, "not a tar or zip archive"
    )
    if compression:
        found += f" compressed with {compression}"
    elif compressed:
        filter_name = ffi.filter_name(read_p, 0) or b"?"
        found += f" compressed with {filter_name.decode('ascii', 'replace')}"
    raise BundleError(
        f"{where} is {found}, but the revision says its bundle type is {bundle_type.value}"
    )


def _corrupt_bundle_error(read_p: int, where: str, name: Optional[bytes]) -> BundleError:
    """The error for a bundle libarchive cannot read on from member ``name``."""
    at = f" at member {show_name(name)}" if name else ""
    return BundleError(f"{where} is truncated or corrupt{at}: {la.error_message(read_p)}")


def _enable_filter_if_built(read_p: int, name: str) -> None:
    try:
        enable = ffi.get_read_filter_function(name)
    except ValueError:
        return  # this libarchive was built without that filter
    enable(read_p)


def _free_quietly(free: Callable[[int], object], handle: int) -> None:
    with contextlib.suppress(ArchiveError):
        free(handle)


class _Extraction:
    """One pass over the archive: judge each member, point it inside the destination, write it.

    Every libarchive status is checked here: a warning from the reading side is logged,
    anything worse is a corrupt bundle; on the writing side a warning is already a
    failure (a full disk, a mode or time that could not be set).
    """

    def __init__(
        self,
        read_p: int,
        write_p: int,
        flags: int,
        bundle_type: BundleType,
        destination: Path,
        archive_dir: Path,
        policy: UnpackPolicy,
        where: str,
        compression: str = "",
    ) -> None:
        self.read_p = read_p
        self.write_p = write_p
        self.flags = flags
        self.bundle_type = bundle_type
        self.destination = destination
        self.archive_dir = archive_dir
        self.policy = policy
        self.where = where
        self.compression = compression
        # Set when the unpack may be shared (see agent.revision.member_shares): where
        # members go, and the bundle file each process reads again on its own.
        self.places: Optional[MemberPlaces] = None
        self.bundle_fd = -1
        # The member at which the unpack is shared, once; -1 for never (again).
        self.share_at = SHARE_AFTER_MEMBERS
        # This process's share; the first process's workers; a worker's progress marks.
        self.share = 0
        self.workers: List[ForkedShare] = []
        self.progress: Optional[Progress] = None
        # The folders the first process wrote while workers wrote too (entries to free).
        self.folders: List[int] = []

    def run(self) -> None:
        entry_p = ffi.entry_new()
        try:
            status = _read_first_bundle_header(
                self.read_p, entry_p, self.bundle_type, self.where, self.compression
            )
            self._extract_all(entry_p, status)
            while self.workers:
                collect_share(self.workers.pop())
            self._write_folders_again()
            # Folders get their modes and times when this handle closes: after every
            # member of every share is written.
            if la.write_close(self.write_p) != la.ARCHIVE_OK:
                raise self._write_failure(None)
        finally:
            for worker in self.workers:
                abandon_share(worker)
            for folder_p in self.folders:
                ffi.entry_free(folder_p)
            ffi.entry_free(entry_p)

    def _write_folders_again(self) -> None:
        """Write again the folders written while workers wrote too. libarchive leaves the
        times and mode of a folder it makes for the end, but sets those of a folder that
        exists at once (here: one a worker made for a file of its share, in which it may
        have written more since)."""
        while self.folders:
            folder_p = self.folders.pop()
            try:
                if la.write_header(self.write_p, folder_p) != la.ARCHIVE_OK:
                    raise self._write_failure(ffi.entry_pathname(folder_p))
                if la.write_finish_entry(self.write_p) != la.ARCHIVE_OK:
                    raise self._write_failure(ffi.entry_pathname(folder_p))
            finally:
                ffi.entry_free(folder_p)

    def _extract_all(self, entry_p: int, status: int) -> None:
        prefix = os.fsencode(self.destination) + b"/"
        room = SpaceClaim(measure_free_space_on_disk(self.destination))
        budget = SizeBudget(
            self.policy.max_extraction_size, self.where, room, str(self.archive_dir)
        )
        self._extract_from(entry_p, status, 0, _LoopState(prefix, budget, set()))

    def _extract_from(self, entry_p: int, status: int, index: int, state: _LoopState) -> None:
        """Extract the member whose header ``status`` is for (number ``index``) and every
        one after it."""
        # The hot loop: what it calls per member is bound to a local name first.
        read_p = self.read_p
        prefix, budget, symlinks = state.prefix, state.budget, state.symlinks
        eof, ok = la.ARCHIVE_EOF, la.ARCHIVE_OK
        read_next_header2 = la.read_next_header2
        entry_pathname = ffi.entry_pathname
        extract_member = self._extract_member
        share_at = self.share_at if self.places is not None else -1
        while status != eof:
            if index == share_at:
                self._share_from(index, state)
            name: bytes = entry_pathname(entry_p)
            if status != ok:
                self._check_header_status(status, name)
            extract_member(entry_p, name, prefix, budget, symlinks)
            status = read_next_header2(read_p, entry_p)
            index += 1

    def _share_from(self, index: int, state: _LoopState) -> None:
        """Hand the members from number ``index`` on to forked workers and this process,
        when they look many and small; else stop looking where members go."""
        assert self.places is not None
        self.share_at = -1
        average = la.filter_bytes(self.read_p, 0) / index
        if average > SMALL_MEMBER_BYTES or not fork_is_safe():
            self.places = None
            return
        # A descriptor of its own for each worker: their reads must not move this one's
        # offset. Without /proc to reopen the bundle by, this process unpacks alone.
        fds: List[int] = []
        try:
            for _ in range(1, self.places.shares):
                fds.append(os.open(f"/proc/self/fd/{self.bundle_fd}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            self.places = None
            return
        try:
            for share, fd in enumerate(fds, start=1):
                work = functools.partial(self._extract_share, share, fd, index=index, state=state)
                try:
                    worker = start_share_in_child(work, error=BundleError, name=_WORKER_NAME)
                except OSError:
                    if self.workers:
                        raise  # the members are already shared out: no way back
                    self.places = None  # no process to spare (fork failed): alone
                    return
                self.workers.append(worker)
        finally:
            for fd in fds:
                os.close(fd)

    def _extract_share(
        self, share: int, fd: int, progress: Progress, *, index: int, state: _LoopState
    ) -> bytes:  # pragma: no cover - runs in the worker process
        """A worker's part: read the bundle again up to member ``index``, then extract
        its share of the members from there on."""
        self.share, self.progress, self.workers = share, progress, []
        self.read_p, self.write_p = ffi.read_new(), ffi.write_disk_new()
        _open_bundle_reader(self.read_p, fd, self.bundle_type, self.where)
        flags = self.flags | (_SYMLINK_CHECK if state.symlinks else 0)
        ffi.write_disk_set_options(self.write_p, flags)
        if self.policy.apply_ownership:
            la.write_disk_set_standard_lookup(self.write_p)
        entry_p = ffi.entry_new()
        status = la.read_next_header2(self.read_p, entry_p)
        for _ in range(index):
            if status < la.ARCHIVE_WARN:
                raise self._corrupt(None)
            status = la.read_next_header2(self.read_p, entry_p)
        self._extract_from(entry_p, status, index, state)
        if la.write_close(self.write_p) != la.ARCHIVE_OK:
            raise self._write_failure(None)
        return b""

    def _writes_here(self, relative: bytes, file_type: int, ordered: bool) -> bool:
        """Whether this process writes the member ``relative``, once processes share the
        unpack; the first process waits here for the others before an ordered member."""
        assert self.places is not None
        place = self.places.place(relative, file_type, ordered)
        if self.progress is not None:
            if place == ORDERED:
                self.progress()
            return place == self.share
        if place == ORDERED:
            for worker in self.workers:
                try:
                    wait_for_progress(worker)
                except BaseException:
                    # It has been reaped: nothing is left to stop.
                    self.workers.remove(worker)
                    raise
        return place in (0, FOLDER, ORDERED) or not self.workers

    def _check_header_status(self, status: int, name: bytes) -> None:
        """Log a reading warning on a member's header; anything worse is a corrupt bundle."""
        if status < la.ARCHIVE_WARN:
            raise self._corrupt(name)
        if self.progress is not None:
            return  # a worker: the first process reads the same header and logs it
        log.warning(
            "libarchive warning",
            bundle=self.where,
            member=show_name(name or b""),
            message=la.error_message(self.read_p),
        )

    def _extract_member(
        self, entry_p: int, name: bytes, prefix: bytes, budget: SizeBudget, symlinks: Set[bytes]
    ) -> None:
        """Judge the member whose header was just read, point it inside the destination
        (``prefix``) and write it, counting what it takes against ``budget``."""
        where = self.where
        relative = relative_member_name(name, where)
        file_type = ffi.entry_filetype(entry_p)
        hardlink: Optional[bytes] = ffi.entry_hardlink(entry_p)
        link_relative = b""
        if hardlink is not None:
            link_relative = self._hardlink_target(name, hardlink, file_type, symlinks)
            file_type = stat.S_IFREG
        elif file_type != stat.S_IFREG and file_type != stat.S_IFDIR:
            check_member_kind(file_type, name, where, self.policy)
        if not relative:
            if file_type != stat.S_IFDIR:
                raise BundleError(f"{where}: member {show_name(name)} names no file")
            # "./" is the archive folder itself, which keeps the mode every revision
            # root gets, so that hooks running as other users can reach their scripts.
            return
        if self.policy.reject_unsafe_permissions:
            check_member_permissions(file_type, ffi.entry_perm(entry_p), name, where, self.policy)
        if symlinks or file_type == stat.S_IFLNK:
            self._track_symlinks(relative, file_type, link_relative, symlinks, name)
        counted = (
            file_type == stat.S_IFREG
            and self.bundle_type is BundleType.ZIP
            and not ffi.entry_size_is_set(entry_p)
        )
        if self.places is not None and not self._writes_here(
            relative,
            file_type,
            counted or hardlink is not None or _closed_folder(entry_p, file_type),
        ):
            # Another process writes it; the room it takes is counted here all the same.
            if not counted:
                _claim_member_room(entry_p, name, file_type, hardlink is not None, budget)
            return
        ffi.entry_copy_pathname(entry_p, prefix + relative)
        if hardlink is not None:
            la.entry_copy_hardlink(entry_p, prefix + link_relative)
        if counted:
            # A zip member streamed with a data descriptor: its size is known only at
            # its end, so its bytes are counted as they are written.
            budget.take_room(0)
            self._write_counted(entry_p, name, budget)
            return
        _claim_member_room(entry_p, name, file_type, hardlink is not None, budget)
        # Header, data and finish in one call. libarchive stops a member at its declared
        # size ("Too much data"), so a declared size is also an enforced one.
        status = la.read_extract2(self.read_p, entry_p, self.write_p)
        if status != la.ARCHIVE_OK:
            raise self._extract_failure(name, status)
        if self.workers and file_type == stat.S_IFDIR:
            self.folders.append(la.entry_clone(entry_p))

    def _track_symlinks(
        self,
        relative: bytes,
        file_type: int,
        link_relative: bytes,
        symlinks: Set[bytes],
        name: bytes,
    ) -> None:
        """Refuse a member written through a symlink the archive made, and keep ``symlinks``
        (the members that are symlinks now) current."""
        if symlinks:
            _refuse_writes_through(relative, symlinks, name, self.where)
            # A hard link to a symlink is a symlink too.
            if file_type == stat.S_IFLNK or link_relative in symlinks:
                symlinks.add(relative)
            else:
                symlinks.discard(relative)
        elif file_type == stat.S_IFLNK:
            symlinks.add(relative)
            ffi.write_disk_set_options(self.write_p, self.flags | _SYMLINK_CHECK)

    def _write_counted(self, entry_p: int, name: bytes, budget: SizeBudget) -> None:
        """Write one member block by block, counting its bytes against the size limit."""
        read_p, write_p, eof, ok = self.read_p, self.write_p, la.ARCHIVE_EOF, la.ARCHIVE_OK
        buffer, size, offset = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_int64()
        if la.write_header(write_p, entry_p) != ok:
            raise self._write_failure(name)
        while True:
            status = la.read_data_block(
                read_p, ctypes.byref(buffer), ctypes.byref(size), ctypes.byref(offset)
            )
            if status == eof:
                break
            if status != ok:
                raise self._corrupt(name)
            budget.write(size.value, name)
            if la.write_data_block(write_p, buffer, size, offset) < 0:
                raise self._write_failure(name)
        if la.write_finish_entry(write_p) != ok:
            raise self._write_failure(name)

    def _hardlink_target(
        self, name: bytes, target: bytes, file_type: int, symlinks: Set[bytes]
    ) -> bytes:
        """The validated target of a hard-link member, relative to the archive root."""
        if file_type not in (0, stat.S_IFREG):
            check_member_kind(file_type, name, self.where, self.policy)
        if target.startswith(b"/") or b".." in target.split(b"/"):
            raise BundleError(
                f"{self.where}: member {show_name(name)} is a hard link to"
                f" {show_name(target)}, outside the archive folder"
            )
        relative = relative_member_name(target, self.where)
        if not relative:
            raise BundleError(f"{self.where}: member {show_name(name)} is a hard link to no file")
        if symlinks:
            _refuse_writes_through(relative, symlinks, name, self.where)
        return relative

    def _corrupt(self, name: Optional[bytes]) -> BundleError:
        return _corrupt_bundle_error(self.read_p, self.where, name)

    def _extract_failure(self, name: bytes, status: int) -> BundleError:
        # archive_read_extract2 reports a failed write as a warning, with the writer's
        # error copied to the reader; anything worse comes from reading the bundle.
        if status < la.ARCHIVE_WARN:
            return self._corrupt(name)
        if is_disk_full(la.error_number(self.read_p)) or is_disk_full(
            la.error_number(self.write_p)
        ):
            return self._disk_full()
        message = la.error_message(self.read_p).replace(
            str(self.destination), str(self.archive_dir)
        )
        return BundleError(
            f"{self.where}: cannot unpack member {show_name(name)} into {self.archive_dir}:"
            f" {message}"
        )

    def _disk_full(self) -> BundleError:
        return BundleError(
            f"the disk is full: no space left on device for {self.archive_dir}"
            f" while unpacking {self.where}"
        )

    def _write_failure(self, name: Optional[bytes]) -> BundleError:
        if is_disk_full(la.error_number(self.write_p)):
            return self._disk_full()
        # libarchive names the absolute path it was given: show the final folder instead.
        message = la.error_message(self.write_p).replace(
            str(self.destination), str(self.archive_dir)
        )
        member = f" member {show_name(name)}" if name else ""
        return BundleError(f"{self.where}: cannot write{member} into {self.archive_dir}: {message}")


def _closed_folder(entry_p: int, file_type: int) -> bool:
    """Whether the member is a folder that its owner could not write into."""
    return file_type == stat.S_IFDIR and ffi.entry_perm(entry_p) & 0o700 != 0o700


@dataclass
class _LoopState:
    """What the member loop carries from one member to the next: the destination's
    prefix, the bytes counted so far and the members that are symlinks now."""

    prefix: bytes
    budget: SizeBudget
    symlinks: Set[bytes]


def _claim_member_room(
    entry_p: int, name: bytes, file_type: int, is_hardlink: bool, budget: SizeBudget
) -> None:
    """Count a member of known size against ``budget`` before it is written."""
    if file_type == stat.S_IFREG:
        size = ffi.entry_size(entry_p)
        stored = size
        if size >= _SPARSE_CHECK_MIN and not is_hardlink:
            stored = _stored_size(entry_p, size)
        budget.declare(size, name, stored=stored)
    else:
        # A folder takes a block on most filesystems; a symlink an inode.
        budget.take_room(1 if file_type == stat.S_IFDIR else 0)


def _stored_size(entry_p: int, size: int) -> int:
    """The data bytes of a member: the sum of its sparse map's ranges when it has one
    (a sparse tar member), else its size."""
    if la.entry_sparse_reset(entry_p) <= 0:
        return size
    stored = 0
    offset, length = ctypes.c_int64(), ctypes.c_int64()
    while (
        la.entry_sparse_next(entry_p, ctypes.byref(offset), ctypes.byref(length)) == la.ARCHIVE_OK
    ):
        stored += length.value
    return min(stored, size)


def _unreadable(where: str, bundle_type: BundleType, read_p: int) -> BundleError:
    return BundleError(
        f"{where} cannot be read as a {bundle_type.value} archive: {la.error_message(read_p)}"
    )


def _refuse_writes_through(relative: bytes, symlinks: Set[bytes], name: bytes, where: str) -> None:
    """Refuse a member whose path goes through a symbolic link the archive created."""
    slash = relative.find(b"/")
    while slash != -1:
        parent = relative[:slash]
        if parent in symlinks:
            raise BundleError(
                f"{where}: member {show_name(name)} would be written through the symbolic"
                f" link member {show_name(parent)}"
            )
        slash = relative.find(b"/", slash + 1)
