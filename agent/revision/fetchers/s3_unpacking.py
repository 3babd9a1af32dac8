"""Unpacking a tar or tgz bundle from S3 while it is still being downloaded.

Done one after the other, a big bundle costs its download plus its unpack; done side by
side, the longer of the two. The S3 fetcher writes ranges at their offsets of the partial
file, several at once, while the unpacker reads the archive once, in order. So a feeder
thread follows the prefix of the file that is complete and hands it to the unpacker
through a pipe (``sendfile``: the bytes go from the page cache to the pipe without a copy
in Python), and the unpack runs in a thread of its own. The file still becomes
``bundle.tar`` once every byte is there, and failures end as they did one after the
other: a failed download is the error reported (the unpacker sees the stream end early
and leaves no folder behind); a failed unpack is reported once the download is complete,
the bundle kept for a look. A zip cannot be read in order (its directory is at its end)
and is unpacked after its download; so is a small bundle, which arrives in less time than
the two threads and the pipe of a streamed unpack take to set up.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import os
import threading
from typing import Callable, Dict, List, Optional

import structlog

from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import S3Revision
from agent.revision.archive_staging import describe_os_error
from agent.revision.bundle import UnpackPolicy
from agent.revision.errors import BundleError
from agent.revision.fetchers.s3 import download_s3_bundle_to_disk
from agent.revision.fetchers.settings import FetchSettings
from agent.revision.unpack import unpack_bundle_stream_to_disk

log = structlog.get_logger(__name__)

# Linux's F_SETPIPE_SZ (fcntl has the name from Python 3.10): a pipe of 1 MiB, the
# unpacker's read size, instead of 64 KiB halves the system calls on both ends.
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PIPE_SIZE = 1 << 20
# Objects below this size are unpacked once they are whole, in the calling thread.
STREAM_MIN_BYTES = 1 << 20


def download_and_unpack_s3_bundle_to_disk(
    revision: S3Revision,
    deployment: DeploymentDir,
    *,
    appspec_filename: str,
    policy: UnpackPolicy,
    fetch: FetchSettings,
) -> bool:
    """Download the tar or tgz S3 revision to ``deployment.bundle`` and unpack it into
    ``deployment.archive`` as it arrives (network, disk); raises BundleError.

    Returns False, with nothing unpacked, for an object below :data:`STREAM_MIN_BYTES`
    (an empty one included): the caller then unpacks the downloaded file, which for an
    empty one gives the one clear message."""
    where = f"bundle {deployment.bundle}"

    def unpack(read_end: int) -> None:
        unpack_bundle_stream_to_disk(
            read_end,
            revision.bundle_type,
            deployment.archive,
            where=where,
            appspec_filename=appspec_filename,
            policy=policy,
        )

    follower = _Follower(unpack)
    try:
        download_s3_bundle_to_disk(revision, deployment.bundle, fetch, follower)
    except BaseException:
        follower.finish(abandon=True)
        raise
    follower.finish(abandon=False)
    follower.raise_failure(where)
    return follower.streaming


class _Follower:
    """The download's watcher: knows the complete prefix of the file, feeds it to the
    unpacker's pipe, and runs the unpack."""

    def __init__(self, unpack: Callable[[int], None]) -> None:
        self._unpack = unpack
        self._changed = threading.Condition()
        self._size = 0
        self._prefix = 0  # bytes [0, prefix) of the file are written
        # Written runs beyond the prefix, by their start and by their end.
        self._runs_by_start: Dict[int, int] = {}
        self._runs_by_end: Dict[int, int] = {}
        self._download_over = False
        self._abandoned = False
        self._threads: List[threading.Thread] = []
        self.unpack_error: Optional[BaseException] = None
        self.feed_error: Optional[OSError] = None

    @property
    def streaming(self) -> bool:
        return bool(self._threads)

    def started(self, fd: int, size: int) -> None:
        if size < STREAM_MIN_BYTES:
            return
        self._size = size
        source = os.dup(fd)  # the fetcher closes its own descriptor when it is done
        read_end, write_end = os.pipe()
        # Above the system's pipe-max-size the default size still works.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
        log.info("unpacking bundle as it downloads", bytes=size)
        for name, target, argument in (
            ("bundle-feed", self._feed, (source, write_end)),
            ("bundle-unpack", self._run, (read_end,)),
        ):
            # Each thread keeps the deployment's bound log fields.
            context = contextvars.copy_context()
            thread = threading.Thread(
                target=context.run, args=(target, *argument), name=name, daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def written(self, offset: int, count: int) -> None:
        start, end = offset, offset + count
        with self._changed:
            # Join the runs this one touches: each part is written in order, so a chunk
            # usually extends the run its part's previous chunk left.
            before = self._runs_by_end.pop(start, None)
            if before is not None:
                del self._runs_by_start[before]
                start = before
            after = self._runs_by_start.pop(end, None)
            if after is not None:
                del self._runs_by_end[after]
                end = after
            if start <= self._prefix:
                self._prefix = max(self._prefix, end)
                self._changed.notify_all()
            else:
                self._runs_by_start[start] = end
                self._runs_by_end[end] = start

    def finish(self, *, abandon: bool) -> None:
        """The download is over: let the threads end, and wait for them. When it failed
        (``abandon``), the unpacker is fed no further and soon sees the stream end."""
        with self._changed:
            self._download_over = True
            self._abandoned = abandon
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def raise_failure(self, where: str) -> None:
        """Raise what went wrong on the follower's side, if anything did."""
        if self.feed_error is not None:
            reason = describe_os_error(self.feed_error)
            raise BundleError(f"cannot read back {where} while unpacking it: {reason}")
        if self.unpack_error is not None:
            raise self.unpack_error

    def _feed(self, source: int, write_end: int) -> None:
        sent = 0
        try:
            while sent < self._size:
                with self._changed:
                    while self._prefix <= sent and not self._download_over:
                        self._changed.wait()
                    ready = self._prefix
                if ready <= sent or self._abandoned:
                    return  # the download stopped short: the unpacker sees the end
                while sent < ready and not self._abandoned:
                    sent += _send_on(write_end, source, sent, ready - sent)
        except BrokenPipeError:
            pass  # the unpacker stopped reading: it failed, or the archive ended
        except OSError as error:
            self.feed_error = error  # reported first: the unpacker only sees the stream end
        finally:
            os.close(write_end)
            os.close(source)

    def _run(self, read_end: int) -> None:
        try:
            self._unpack(read_end)
        except BaseException as error:
            self.unpack_error = error
        finally:
            os.close(read_end)


def _send_on(write_end: int, source: int, offset: int, count: int) -> int:
    """Copy up to ``count`` bytes at ``offset`` of ``source`` into the pipe; how many went."""
    try:
        moved = os.sendfile(write_end, source, offset, count)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
        # A kernel that cannot sendfile into a pipe: through a buffer instead.
        moved = os.write(write_end, os.pread(source, min(count, _PIPE_SIZE), offset))
    if moved == 0:
        raise OSError(errno.EIO, "the bundle file is shorter than what was written to it")
    return moved
