"""Fetching a GitHub revision into ``<deployment>/bundle.tar`` (docs/behaviour.md section 7).

The archive of one commit comes from the API (``/repos/O/R/tarball|zipball/C``), which
answers with a redirect to a download host. The access token goes to the API host only:
it is never sent to another host a redirect points at, never logged, and scrubbed from
any message. Server errors and broken connections are retried with a doubling back-off;
the body is streamed into a partial file beside the bundle and renamed into place once
complete. Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, List, Optional
from urllib.parse import quote, urlsplit

import structlog

from agent.aws_clients.client_settings import agent_user_agent
from agent.deployment_specification.model import BundleType, GitHubRevision
from agent.revision.archive_staging import (
    bundle_file_staged_on_disk,
    check_bundle_fits_on_disk,
)
from agent.revision.errors import BundleError
from agent.revision.fetchers.settings import FetchSettings

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_MAX_DELAY_SECONDS = 30.0


class _TokenKeepingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, carrying the Authorization header only to the origin it was
    meant for (same scheme, host and port); urllib would otherwise drop or keep it
    regardless of where the redirect leads."""

    def __init__(self, origin: str, authorization: Optional[str]) -> None:
        super().__init__()
        self._origin = origin
        self._authorization = authorization

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> Optional[urllib.request.Request]:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self._authorization and _origin_of(newurl) == self._origin:
            new.add_unredirected_header("Authorization", self._authorization)
        return new


class _Retryable(Exception):
    """An attempt failed in a way a later attempt may not."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def github_archive_url(api_endpoint: str, revision: GitHubRevision) -> str:
    """``{api}/repos/{account}/{repository}/{tarball|zipball}/{commit}``."""
    kind = "zipball" if revision.bundle_type is BundleType.ZIP else "tarball"
    parts = (revision.account, revision.repository, kind, revision.commit_id)
    return api_endpoint.rstrip("/") + "/repos/" + "/".join(quote(part, safe="") for part in parts)


def download_github_bundle_to_disk(
    revision: GitHubRevision, bundle_path: Path, settings: FetchSettings
) -> None:
    """Download the commit's archive to ``bundle_path`` (network, disk).

    Raises :class:`BundleError` with a one-line message (never holding the token) when
    the commit or repository cannot be found, the token is refused, or the transfer
    fails after ``settings.max_attempts`` attempts.
    """
    url = github_archive_url(settings.github_api_endpoint, revision)
    name = f"{revision.account}/{revision.repository}@{revision.commit_id}"
    token = revision.access_token or None
    log.info(
        "downloading bundle from GitHub",
        repository=f"{revision.account}/{revision.repository}",
        commit=revision.commit_id,
        api=_redact(settings.github_api_endpoint, token),
        with_token=token is not None,
    )
    started = time.monotonic()
    delay = settings.retry_delay_seconds
    last_reason = ""
    for attempt in range(1, settings.max_attempts + 1):
        try:
            size = _fetch_once_to_disk(url, name, token, bundle_path, settings)
        except _Retryable as retryable:
            last_reason = _redact(retryable.reason, token)
            if attempt == settings.max_attempts:
                break
            log.warning(
                "GitHub download failed, retrying",
                commit=revision.commit_id,
                attempt=attempt,
                reason=last_reason,
                retry_in_seconds=delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_SECONDS)
            continue
        log.info(
            "bundle downloaded",
            commit=revision.commit_id,
            bytes=size,
            seconds=round(time.monotonic() - started, 3),
        )
        return
    raise BundleError(
        f"cannot download {name} from GitHub after {settings.max_attempts} attempts: {last_reason}"
    )


def _fetch_once_to_disk(
    url: str, name: str, token: Optional[str], bundle_path: Path, settings: FetchSettings
) -> int:
    authorization = f"token {token}" if token else None
    handlers: List[urllib.request.BaseHandler] = [
        _TokenKeepingRedirects(_origin_of(url), authorization)
    ]
    if settings.proxy_uri:
        proxy = settings.proxy_uri
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, method="GET")  # noqa: S310 (http(s) API base)
    request.add_header("Accept", "application/vnd.github+json")
    request.add_header("User-Agent", agent_user_agent())
    if authorization:
        # Unredirected: the redirect handler decides where it may follow.
        request.add_unredirected_header("Authorization", authorization)
    timeout = max(settings.connect_timeout_seconds, settings.read_timeout_seconds)
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        with contextlib.closing(error):
            raise _http_error(
                error.code, error.headers.get("X-RateLimit-Remaining"), name, token
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _Retryable(_network_reason(error)) from None
    with contextlib.closing(response):
        return _stream_to_disk(response, bundle_path, name)


def _stream_to_disk(response: Any, bundle_path: Path, name: str) -> int:
    announced = response.headers.get("Content-Length")
    if announced is not None and announced.isdigit():
        check_bundle_fits_on_disk(int(announced), bundle_path, name)
    written = 0
    with bundle_file_staged_on_disk(bundle_path, name) as partial, open(partial, "xb") as out:
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
            raise _Retryable(
                f"the download broke after {written} bytes ({_network_reason(error)})"
            ) from None
        if announced is not None and announced.isdigit() and int(announced) != written:
            raise _Retryable(f"the download was cut short: got {written} of {announced} bytes")
    return written


def _http_error(
    status: int, rate_limit_remaining: Optional[str], name: str, token: Optional[str]
) -> Exception:
    if status >= 500 or status == 429:
        return _Retryable(f"GitHub answered HTTP {status}")
    if status == 404:
        hint = "" if token else "; a private repository needs an access token"
        return BundleError(
            f"GitHub has no commit {name} (HTTP 404: the account, repository or commit does"
            f" not exist, or the token cannot see it{hint})"
        )
    if status == 401:
        return BundleError(
            f"GitHub refused the access token for {name} (HTTP 401): it is invalid or expired"
        )
    if status == 403:
        if rate_limit_remaining == "0":
            return _Retryable("GitHub's API rate limit is exhausted (HTTP 403)")
        return BundleError(
            f"GitHub denied access to {name} (HTTP 403): the access token lacks permission"
            " for this repository"
        )
    return BundleError(f"GitHub refused to send {name} (HTTP {status})")


def _network_reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, str):
        error = error.reason
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _redact(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text
