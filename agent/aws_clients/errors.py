"""What a failed AWS call means, in the words an operator reads: the one translation of
botocore's failures for every client of the agent (the command service, S3).

botocore's own messages are never shown: they can span lines and name internals. A
failure becomes an :class:`AwsFailure`: a one-line reason chosen here by the kind of
failure, the service's error code, and whether trying again may help. Each caller puts
that reason in a line of its own error family (``CommandServiceError``, ``BundleError``),
after its own subject, so a refused connection, a read timeout or missing credentials
read the same whichever client met them. The reason comes in two forms, from one table:
one for a line that already names the endpoint ("cannot download s3://b/k from E after
2 attempts: could not connect"), one that names it ("command service PollHostCommand
could not connect to E").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Type

from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)

from agent.aws_clients.client_settings import hide_url_user_info
from agent.configuration.on_premises import OnPremisesConfigError
from agent.logging.printable import one_line

MESSAGE_LIMIT = 200

# Everything a botocore call of the agent can raise that is not a bug: the service's
# answer, botocore's own failures, and our credential providers' (a credentials file
# that a rotation left unreadable).
AWS_CALL_ERRORS: Tuple[Type[Exception], ...] = (ClientError, BotoCoreError, OnPremisesConfigError)

# Error codes that mean "slow down", as botocore's retry logic knows them, plus HTTP 429.
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
# Client-side (4xx) codes that a later attempt can get past: a refreshed credential, a
# request that timed out on the service side.
_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "IDPCommunicationError",
    }
)


@dataclass(frozen=True)
class _Kind:
    """One kind of failure: its reason, and the same reason naming the endpoint (None:
    ``failed: <reason>``). ``sent``: the request went out (an attempt was made)."""

    error: Type[Exception]
    reason: str
    reason_at_endpoint: Optional[str]
    retryable: bool
    sent: bool = True


# The first kind the error is an instance of wins: subclasses before their bases.
_KINDS: Tuple[_Kind, ...] = (
    _Kind(
        ReadTimeoutError,
        "got no answer within the read timeout",
        "got no answer from {where} within the read timeout",
        retryable=True,
    ),
    _Kind(
        ConnectTimeoutError,
        "could not connect in time",
        "could not connect to {where} in time",
        retryable=True,
    ),
    _Kind(
        ProxyConnectionError,
        "could not connect through proxy {proxy}",
        "could not connect through proxy {proxy}",
        retryable=True,
    ),
    _Kind(SSLError, "TLS error", "failed: TLS error talking to {where}", retryable=True),
    _Kind(
        EndpointConnectionError,
        "could not connect",
        "could not connect to {where}",
        retryable=True,
    ),
    _Kind(
        ConnectionClosedError,
        "the connection was closed without an answer",
        "failed: {where} closed the connection without an answer",
        retryable=True,
    ),
    _Kind(
        HTTPClientError,
        "the connection broke",
        "failed: the connection to {where} broke",
        retryable=True,
    ),
    _Kind(
        CredentialRetrievalError,
        "AWS credentials could not be fetched",
        None,
        retryable=True,
        sent=False,
    ),
    _Kind(NoCredentialsError, "no AWS credentials were found", None, retryable=False, sent=False),
    _Kind(
        PartialCredentialsError,
        "the AWS credentials are incomplete",
        None,
        retryable=False,
        sent=False,
    ),
)


@dataclass(frozen=True)
class AwsFailure:
    """A failed AWS call, described for an operator.

    ``reason`` follows a subject that names the endpoint already; ``reason_at_endpoint``
    follows one that does not; ``endpoint`` is the endpoint as shown (no user name or
    password). ``code`` and ``http_status`` are the service's, when it
    answered (``answered``); ``sent`` says a request went out at all (not so for missing
    credentials). ``throttled``: the service asked us to slow down; ``retryable``: the
    same call may succeed later without anyone changing anything.
    """

    reason: str
    reason_at_endpoint: str
    endpoint: str
    code: str = ""
    http_status: Optional[int] = None
    answered: bool = False
    sent: bool = True
    throttled: bool = False
    retryable: bool = False


def describe_aws_failure(
    error: Exception, *, endpoint: str, proxy_uri: Optional[str] = None
) -> AwsFailure:
    """The one-line description of ``error``, one of :data:`AWS_CALL_ERRORS`, raised by a
    call to ``endpoint`` (through ``proxy_uri`` when set). Names no secret: user names and
    passwords in the URLs are hidden."""
    where = hide_url_user_info(endpoint)
    if isinstance(error, ClientError):
        return _service_answer(error, where)
    if isinstance(error, OnPremisesConfigError):
        # Our credentials file, unreadable for now: the rotation job may put it back.
        return _without_endpoint(error.message, where, retryable=True, sent=False)
    if isinstance(error, ParamValidationError):
        report = str(error.kwargs.get("report", "")).strip().splitlines()
        invalid = one_line(report[0] if report else "", MESSAGE_LIMIT)
        reason = f"the request is invalid: {invalid}"
        return _without_endpoint(reason, where, retryable=False, sent=False)
    proxy = hide_url_user_info(proxy_uri) if proxy_uri else "the proxy"
    for kind in _KINDS:
        if isinstance(error, kind.error):
            reason = kind.reason.format(proxy=proxy)
            at_endpoint = kind.reason_at_endpoint
            return AwsFailure(
                reason=reason,
                reason_at_endpoint=(
                    at_endpoint.format(where=where, proxy=proxy)
                    if at_endpoint is not None
                    else f"failed: {reason}"
                ),
                endpoint=where,
                sent=kind.sent,
                retryable=kind.retryable,
            )
    return _without_endpoint(type(error).__name__, where, retryable=False, sent=True)


def _without_endpoint(reason: str, where: str, *, retryable: bool, sent: bool) -> AwsFailure:
    return AwsFailure(reason, f"failed: {reason}", where, sent=sent, retryable=retryable)


def _service_answer(error: Any, where: str) -> AwsFailure:
    """The service answered with an error: its code, HTTP status and message."""
    details: Mapping[str, Any] = error.response.get("Error", {})
    status: Optional[int] = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(details.get("Code") or "").strip() or "UnknownError"
    throttled = code in _THROTTLING_CODES or status == 429
    message = one_line(str(details.get("Message") or ""), MESSAGE_LIMIT)
    http = f" (HTTP {status})" if status else ""
    reason = f"{code}{http}" + (f": {message}" if message else "")
    return AwsFailure(
        reason=reason,
        reason_at_endpoint=f"failed: {reason}",
        endpoint=where,
        code=code,
        http_status=status,
        answered=True,
        throttled=throttled,
        retryable=throttled or code in _TRANSIENT_CODES or (status or 0) >= 500,
    )
