"""Fetching an S3 revision into ``<deployment>/bundle.tar`` (docs/behaviour.md section 7).

The object is looked up first (HEAD, with the revision's version when it names one), its
ETag compared with the revision's before a byte is trusted, and then streamed into a
partial file beside the bundle that is renamed into place only once every byte is there.
Every GET is pinned to the version and ETag the HEAD saw (``If-Match``), so the object
cannot change half way. Large objects are fetched as ranges by a few threads, each writing
at its own offset of a preallocated file; a part whose stream breaks resumes where it
stopped. The client comes from :mod:`agent.aws_clients.clients` (the daemon's cached one
when the settings carry a cache), and a failed call reads as it does for the command
service (:mod:`agent.aws_clients.errors`). botocore is imported when this module is, and
this module only when an S3 revision is fetched.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Protocol, Tuple

import structlog

from agent.aws_clients.client_settings import hide_url_user_info
from agent.aws_clients.clients import s3_client_for
from agent.aws_clients.errors import AWS_CALL_ERRORS, AwsFailure, describe_aws_failure
from agent.deployment_specification.model import S3Revision
from agent.revision.archive_staging import (
    bundle_file_staged_on_disk,
    check_bundle_fits_on_disk,
    is_disk_full,
)
from agent.revision.errors import BundleError
from agent.revision.fetchers.settings import FetchSettings

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})
_CHANGED_CODES = frozenset({"412", "PreconditionFailed"})


@dataclass(frozen=True)
class S3Object:
    """What the HEAD said about the object every GET is then pinned to."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: Optional[str]

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def get_parameters(self) -> Dict[str, str]:
        parameters = {"Bucket": self.bucket, "Key": self.key, "IfMatch": self.etag}
        if self.version_id:
            parameters["VersionId"] = self.version_id
        return parameters


class DownloadWatcher(Protocol):
    """Told where the bundle's bytes land while they arrive, so a reader can follow."""

    def started(self, fd: int, size: int) -> None:
        """The partial file is open as ``fd`` (the fetcher closes it) and ``size`` long."""

    def written(self, offset: int, count: int) -> None:
        """Bytes ``[offset, offset + count)`` are in the file; raising aborts the download."""


class _Progress:
    """Bytes received so far, shared by the part threads; logs a line now and then."""

    def __init__(
        self, url: str, total: int, interval: float, watcher: Optional[DownloadWatcher] = None
    ) -> None:
        self.watcher = watcher
        self._url = url
        self._total = total
        self._interval = interval
        self._lock = threading.Lock()
        self._done = 0
        self._last_logged = time.monotonic()
        self.cancelled = threading.Event()

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count
            now = time.monotonic()
            if now - self._last_logged < self._interval:
                return
            self._last_logged = now
            done = self._done
        log.info(
            "bundle download progress",
            source=self._url,
            received=_size_text(done),
            total=_size_text(self._total),
            percent=round(100 * done / self._total, 1) if self._total else 100.0,
        )


def download_s3_bundle_to_disk(
    revision: S3Revision,
    bundle_path: Path,
    settings: FetchSettings,
    watcher: Optional[DownloadWatcher] = None,
) -> None:
    """Download the S3 revision to ``bundle_path`` (network, disk), telling ``watcher``
    where each chunk lands.

    Raises :class:`BundleError` with a one-line message when the object is missing, access
    is denied, its ETag is not the revision's, or the transfer cannot be completed.
    """
    client = s3_client_for(settings.s3_client_settings, settings.s3_clients)
    url = f"s3://{revision.bucket}/{revision.key}"
    where = _endpoint_text(client)
    try:
        target = _head_object(client, revision, url)
    except AWS_CALL_ERRORS as error:
        raise _s3_error(
            _failure(error, client, settings), url, revision.version, settings
        ) from None
    _check_etag(revision, target, url)
    parallel = target.size >= settings.parallel_threshold and target.size > settings.part_size
    log.info(
        "downloading bundle",
        source=url,
        version=target.version_id,
        size=_size_text(target.size),
        bytes=target.size,
        parts=-(-target.size // settings.part_size) if parallel else 1,
        endpoint=where,
    )
    started = time.monotonic()
    check_bundle_fits_on_disk(target.size, bundle_path, url)
    with bundle_file_staged_on_disk(bundle_path, url) as partial:
        # Read-write: a watcher may read back what has arrived.
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _preallocate(fd, target.size)
            progress = _Progress(url, target.size, settings.progress_interval_seconds, watcher)
            if watcher is not None:
                watcher.started(fd, target.size)
            if parallel:
                _download_parts(client, target, fd, settings, progress)
            else:
                _download_range(client, target, fd, 0, target.size, settings, progress)
            written = os.fstat(fd).st_size
            if written != target.size:
                raise BundleError(f"download of {url} is {written} bytes, not {target.size}")
        finally:
            os.close(fd)
    log.info(
        "bundle downloaded",
        source=url,
        size=_size_text(target.size),
        seconds=round(time.monotonic() - started, 3),
    )


def _head_object(client: Any, revision: S3Revision, url: str) -> S3Object:
    parameters = {"Bucket": revision.bucket, "Key": revision.key}
    if revision.version:
        parameters["VersionId"] = revision.version
    head: Mapping[str, Any] = client.head_object(**parameters)
    etag = str(head.get("ETag") or "")
    if not etag:
        raise BundleError(f"S3 sent no ETag for {url}; cannot pin the download")
    version = head.get("VersionId") or revision.version
    return S3Object(revision.bucket, revision.key, int(head["ContentLength"]), etag, version)


def _check_etag(revision: S3Revision, target: S3Object, url: str) -> None:
    """Refuse an object whose ETag is not the one the revision names, if it names one."""
    if revision.etag is None:
        return
    expected = revision.etag.strip().strip('"')
    actual = target.etag.strip('"')
    if expected != actual:
        raise BundleError(
            f"{url} has ETag {actual}, but the deployment expects {expected}:"
            " the object was replaced after the deployment was created"
        )


def _preallocate(fd: int, size: int) -> None:
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        # Some file systems cannot reserve space; the writes will tell if it runs out.
        if error.errno is not None and is_disk_full(error.errno):
            raise
        os.ftruncate(fd, size)


def _download_parts(
    client: Any, target: S3Object, fd: int, settings: FetchSettings, progress: _Progress
) -> None:
    ranges: List[Tuple[int, int]] = [
        (start, min(settings.part_size, target.size - start))
        for start in range(0, target.size, settings.part_size)
    ]
    with ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="s3-part") as pool:
        futures = [
            pool.submit(_download_range, client, target, fd, start, length, settings, progress)
            for start, length in ranges
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in done if future.exception() is not None]
        if failed:
            progress.cancelled.set()
            for future in futures:
                future.cancel()
            wait(futures)
            error = failed[0].exception()
            assert error is not None
            raise error


def _download_range(
    client: Any,
    target: S3Object,
    fd: int,
    start: int,
    length: int,
    settings: FetchSettings,
    progress: _Progress,
) -> None:
    """Write bytes ``[start, start + length)`` of the object at the same offsets of ``fd``.

    botocore retries a request that fails; a stream that breaks after its headers arrived
    is resumed here from the first missing byte, up to ``max_attempts`` times.
    """
    end = start + length
    position = start
    whole = start == 0 and length == target.size
    problem = "the stream ended early"
    for _attempt in range(settings.max_attempts):
        if position == end or progress.cancelled.is_set():
            break
        try:
            body = _open_range(client, target, position, end, ranged=not (whole and position == 0))
            try:
                # Counted chunk by chunk, so that a stream breaking part way resumes after
                # the last byte written.
                for count in _copy_body_to_disk(body, fd, position, end, progress):
                    position += count
            finally:
                body.close()
        except AWS_CALL_ERRORS as error:
            failure = _failure(error, client, settings)
            if failure.answered or not failure.sent:
                raise _s3_error(failure, target.url, target.version_id, settings) from None
            # botocore already retried the request; a broken stream gets another go.
            problem = failure.reason
            log.warning(
                "bundle download interrupted, resuming",
                source=target.url,
                offset=position,
                reason=problem,
            )
    if position != end and not progress.cancelled.is_set():
        raise BundleError(
            f"download of {target.url} was cut short after {settings.max_attempts} attempts"
            f" ({problem}): got {position - start} of {length} bytes"
            + (f" at offset {start}" if start else "")
        )


def _open_range(client: Any, target: S3Object, position: int, end: int, *, ranged: bool) -> Any:
    """GET the object from ``position`` to ``end`` (the whole object unless ``ranged``);
    returns the body stream. Refuses an endpoint that answers a range with other bytes."""
    parameters: Dict[str, str] = target.get_parameters()
    if ranged:
        parameters["Range"] = f"bytes={position}-{end - 1}"
    response = client.get_object(**parameters)
    body = response["Body"]
    if ranged and not str(response.get("ContentRange") or "").startswith(f"bytes {position}-"):
        body.close()
        raise BundleError(
            f"{target.url}: the S3 endpoint ignored a byte-range request"
            f" (bytes {position}-{end - 1})"
        )
    return body


def _copy_body_to_disk(
    body: Any, fd: int, position: int, end: int, progress: _Progress
) -> Iterator[int]:
    """Write what ``body`` streams at ``position`` onwards of ``fd`` until ``end``, the
    stream's end or a cancel, yielding the size of each chunk once it is in the file."""
    while position < end and not progress.cancelled.is_set():
        chunk = body.read(min(_CHUNK, end - position))
        if not chunk:
            break
        _write_at(fd, chunk, position)
        if progress.watcher is not None:
            progress.watcher.written(position, len(chunk))
        position += len(chunk)
        progress.add(len(chunk))
        yield len(chunk)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _failure(error: Exception, client: Any, settings: FetchSettings) -> AwsFailure:
    return describe_aws_failure(
        error, endpoint=str(client.meta.endpoint_url), proxy_uri=settings.proxy_uri
    )


def _s3_error(
    failure: AwsFailure, url: str, version: Optional[str], settings: FetchSettings
) -> BundleError:
    """The one line of a failed S3 call: S3's answers that name the object in words of
    their own, anything else in the words every AWS client of the agent uses."""
    if failure.answered:
        return _answer_error(failure, url, version)
    if not failure.sent:
        return BundleError(f"cannot download {url}: {failure.reason}")
    return BundleError(
        f"cannot download {url} from {failure.endpoint} after {settings.max_attempts}"
        f" attempts: {failure.reason}"
    )


def _answer_error(failure: AwsFailure, url: str, version: Optional[str]) -> BundleError:
    code, status = failure.code, failure.http_status
    version_text = f"version {version}" if version else "latest version"
    if code in _MISSING_CODES or status == 404:
        return BundleError(f"{url} does not exist ({version_text}; S3 said {code})")
    if code in _DENIED_CODES or status == 403:
        return BundleError(
            f"access denied to {url} (check the instance role / credentials and the bucket"
            f" policy; S3 said {code})"
        )
    if code in _CHANGED_CODES or status == 412:
        return BundleError(f"{url} changed while it was being downloaded; retry the deployment")
    return BundleError(f"cannot download {url} ({version_text}): {failure.reason}")


def _endpoint_text(client: Any) -> str:
    """The endpoint, without any credentials a URL could carry."""
    return hide_url_user_info(str(client.meta.endpoint_url))


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
