"""The EC2 instance metadata service (IMDS): who this instance is, and in which partition.

The agent asks IMDS at start-up for the instance identity document and the partition, to
build its host identifier. IMDSv2 comes first (a session token from a PUT, sent on every
GET); when IMDS answers the token request as unsupported, or does not answer it at all
(a container behind a hop limit of 1), IMDSv1 is used instead unless ``disable_imds_v1``.
Hosts start the agent before IMDS answers, so connection failures and 5xx answers are
retried with exponential back-off within a bounded total wait. Only ``http.client`` is
used: no SDK import, and never a proxy, because IMDS is a link-local address.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import structlog

from agent.errors import AgentError

log = structlog.get_logger(__name__)

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"

TOKEN_PATH = "/latest/api/token"  # noqa: S105 (a path, not a secret)
DOCUMENT_PATH = "/latest/dynamic/instance-identity/document"
PARTITION_PATH = "/latest/meta-data/services/partition"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105
TOKEN_TTL_SECONDS = 21600

# A token is renewed this long before IMDS would stop accepting it.
_TOKEN_RENEWAL_MARGIN_SECONDS = 60.0
# Answers to the token request that mean "this IMDS does not do IMDSv2" rather than
# "not ready yet"; the AWS SDKs fall back to IMDSv1 on exactly these.
_V2_UNSUPPORTED_STATUSES = frozenset({403, 404, 405})
_PARTITION_PATTERN = re.compile(r"^aws(-[a-z]+)*$")
# Partitions by region prefix, for metadata services too old to serve the partition.
_PARTITION_BY_REGION_PREFIX = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"))


class InstanceMetadataError(AgentError):
    """The EC2 instance metadata service cannot tell who this instance is."""


class MetadataPathMissing(InstanceMetadataError):
    """The metadata service answered 404: it does not serve this path."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep asking an IMDS that does not answer yet.

    A request is retried after ``first_delay`` seconds, doubling up to ``max_delay``,
    until retrying would end after ``total_wait`` seconds from its first attempt;
    ``request_timeout`` bounds each connection and each read.
    """

    first_delay: float = 0.5
    max_delay: float = 8.0
    total_wait: float = 120.0
    request_timeout: float = 2.0


class _NotReady(Exception):
    """A failure worth retrying; ``reason`` is safe to show to an operator.

    ``unanswered`` means the request was sent on an open connection and no answer came.
    """

    def __init__(self, reason: str, *, unanswered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unanswered = unanswered


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: Optional[int]
    base_path: str

    @classmethod
    def parse(cls, url: str) -> _Endpoint:
        problem = InstanceMetadataError(
            f"EC2 metadata endpoint {url!r} is not an http(s) URL such as {DEFAULT_ENDPOINT}"
        )
        parts = urllib.parse.urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            raise problem from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise problem
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


class InstanceMetadataClient:
    """Reads the instance identity from IMDS; keeps its IMDSv2 token between requests."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        disable_v1: bool = False,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.endpoint = endpoint.strip().rstrip("/")
        self._target = _Endpoint.parse(endpoint)
        self._disable_v1 = disable_v1
        self._retry = retry
        self._token: Optional[str] = None
        self._token_renew_at = 0.0
        self._v2_unsupported = False

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        *,
        disable_v1: bool = False,
        retry: RetryPolicy = RetryPolicy(),
    ) -> InstanceMetadataClient:
        """The endpoint from ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` when set, as in the SDKs.

        ``AWS_EC2_METADATA_V1_DISABLED=true`` disables IMDSv1 as ``disable_v1`` does.
        """
        endpoint = environ.get(ENDPOINT_VARIABLE, "").strip() or DEFAULT_ENDPOINT
        v1_disabled_by_environment = (
            environ.get("AWS_EC2_METADATA_V1_DISABLED", "").strip().lower() == "true"
        )
        try:
            return cls(endpoint, disable_v1=disable_v1 or v1_disabled_by_environment, retry=retry)
        except InstanceMetadataError as error:
            raise InstanceMetadataError(f"{ENDPOINT_VARIABLE}: {error.message}") from None

    def fetch_identity_document(self) -> Dict[str, Any]:
        """The instance identity document (``instanceId``, ``region``, ``accountId``, ...)."""
        body = self._get(DOCUMENT_PATH)
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InstanceMetadataError(
                f"EC2 instance identity document from {self.endpoint} is not valid JSON"
            ) from None
        if not isinstance(document, dict):
            raise InstanceMetadataError(
                f"EC2 instance identity document from {self.endpoint} is not a JSON object"
            )
        for key in ("instanceId", "region", "accountId"):
            value = document.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InstanceMetadataError(
                    f"EC2 instance identity document from {self.endpoint} has no {key}"
                )
        return document

    def fetch_partition(self, *, region: Optional[str] = None) -> str:
        """The partition (``aws``, ``aws-cn``, ``aws-us-gov``, ...) this instance runs in.

        A metadata service without the partition path gives the partition of ``region``.
        """
        try:
            body = self._get(PARTITION_PATH)
        except MetadataPathMissing:
            if region is None:
                raise
            partition = partition_of_region(region)
            log.warning(
                "EC2 metadata service has no partition; derived it from the region",
                endpoint=self.endpoint,
                region=region,
                partition=partition,
            )
            return partition
        partition = body.decode("utf-8", errors="replace").strip()
        if not _PARTITION_PATTERN.match(partition):
            raise InstanceMetadataError(
                f"EC2 metadata service at {self.endpoint} gave an invalid partition {partition[:40]!r}"
            )
        return partition

    def fetch_instance_arn(self) -> Tuple[str, str]:
        """``(arn:<partition>:ec2:<region>:<account>:instance/<id>, region)``."""
        document = self.fetch_identity_document()
        region = str(document["region"]).strip()
        partition = self.fetch_partition(region=region)
        account = str(document["accountId"]).strip()
        instance_id = str(document["instanceId"]).strip()
        return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}", region

    def _get(self, path: str) -> bytes:
        """GET ``path``, retrying while IMDS is not ready."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(path)
            except _NotReady as problem:
                delay = min(self._retry.max_delay, self._retry.first_delay * 2 ** (attempt - 1))
                if time.monotonic() + delay - started > self._retry.total_wait:
                    raise InstanceMetadataError(
                        f"EC2 metadata service at {self.endpoint} did not answer {path} after"
                        f" {attempt} attempt(s): {problem.reason}"
                    ) from None
                log.info(
                    "EC2 metadata service not ready; retrying",
                    endpoint=self.endpoint,
                    path=path,
                    reason=problem.reason,
                    attempt=attempt,
                    retry_in_seconds=delay,
                )
                time.sleep(delay)

    def _get_once(self, path: str) -> bytes:
        token, v2_failure = self._session()
        headers = {TOKEN_HEADER: token} if token is not None else {}
        status, body = self._send("GET", path, headers)
        if status == 200:
            return body
        if status == 401 and token is not None:
            # The token expired or IMDS restarted: the next attempt asks for a new one.
            self._token = None
            raise _NotReady(f"HTTP 401 for {path} with an IMDSv2 session")
        if status == 401:
            raise InstanceMetadataError(
                f"EC2 metadata service at {self.endpoint} requires IMDSv2 but the IMDSv2"
                f" session request failed ({v2_failure}); in a container, raise the"
                " instance's metadata hop limit to 2"
            )
        if status == 404:
            raise MetadataPathMissing(
                f"EC2 metadata service at {self.endpoint} has no {path} (HTTP 404)"
            )
        if status == 429 or status >= 500:
            raise _NotReady(f"HTTP {status} for {path}")
        raise InstanceMetadataError(
            f"EC2 metadata service at {self.endpoint} answered HTTP {status} for {path}"
        )

    def _session(self) -> Tuple[Optional[str], str]:
        """``(token, "")`` for IMDSv2, or ``(None, why IMDSv2 failed)`` to use IMDSv1."""
        if self._v2_unsupported:
            return None, "IMDSv2 is not supported"
        if self._token is not None and time.monotonic() < self._token_renew_at:
            return self._token, ""
        try:
            status, body = self._send("PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)})
        except _NotReady as problem:
            # A request that reaches IMDS but whose answer never arrives is what a hop
            # limit of 1 does to a container; IMDSv1 GETs still get through there. With
            # IMDSv1 disabled, waiting for IMDSv2 to answer is all that is left.
            if not problem.unanswered or self._disable_v1:
                raise
            return None, self._fall_back_to_v1(problem.reason, definitive=False)
        if status == 200:
            token = body.decode("ascii", errors="replace").strip()
            if not token:
                raise _NotReady("empty IMDSv2 session answer")
            self._token = token
            self._token_renew_at = (
                time.monotonic() + TOKEN_TTL_SECONDS - _TOKEN_RENEWAL_MARGIN_SECONDS
            )
            return token, ""
        if status in _V2_UNSUPPORTED_STATUSES:
            return None, self._fall_back_to_v1(f"HTTP {status}", definitive=True)
        if status == 429 or status >= 500:
            raise _NotReady(f"HTTP {status} for the IMDSv2 session request")
        raise InstanceMetadataError(
            f"EC2 metadata service at {self.endpoint} answered HTTP {status} to the IMDSv2"
            " session request"
        )

    def _fall_back_to_v1(self, reason: str, *, definitive: bool) -> str:
        if self._disable_v1:
            raise InstanceMetadataError(
                f"EC2 metadata service at {self.endpoint} gave no IMDSv2 session ({reason})"
                " and disable_imds_v1 is set, so IMDSv1 is not tried"
            )
        if definitive:
            self._v2_unsupported = True
        log.warning(
            "IMDSv2 is not available; falling back to IMDSv1",
            endpoint=self.endpoint,
            reason=reason,
        )
        return reason

    def _send(self, method: str, path: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
        """One request; transport failures become :class:`_NotReady`."""
        target = self._target
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = http.client.HTTPSConnection(
                target.host, target.port, timeout=self._retry.request_timeout
            )
        else:
            connection = http.client.HTTPConnection(
                target.host, target.port, timeout=self._retry.request_timeout
            )
        timeout = f"{self._retry.request_timeout:g}s"
        try:
            try:
                connection.connect()
            except socket.timeout:
                raise _NotReady(f"no connection within {timeout}") from None
            except OSError as error:
                raise _NotReady(_describe_transport_error(error)) from None
            try:
                connection.request(method, target.base_path + path, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except socket.timeout:
                raise _NotReady(f"no answer within {timeout}", unanswered=True) from None
            except (OSError, http.client.HTTPException) as error:
                raise _NotReady(_describe_transport_error(error)) from None
        finally:
            connection.close()


def partition_of_region(region: str) -> str:
    """The partition a region name belongs to (``aws`` unless it says otherwise)."""
    for prefix, partition in _PARTITION_BY_REGION_PREFIX:
        if region.startswith(prefix):
            return partition
    return "aws"


def _describe_transport_error(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__
