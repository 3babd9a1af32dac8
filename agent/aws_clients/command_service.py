"""A typed client of the CodeDeploy command service (docs/behaviour.md section 5), driven by botocore.

botocore has no model of this API, so the package ships one (``data/``) and the client is
built from it: JSON 1.1, SigV4, no hand-written HTTP. This module adds what the AWS agent
adds to the SDK client (the endpoint rule, the agent-version header, the long-poll read
timeout, the proxy), checks what the service answers, and turns every botocore failure
into a :class:`CommandServiceError` with a one-line message and retry hints for the poll
loop, which does its own back-off.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

import structlog
from botocore import xform_name  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    Credentials,
)
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

from agent import __version__
from agent.aws_clients.session import new_botocore_session
from agent.configuration.model import FIPS_REGIONS, AgentConfig, ConfigError
from agent.errors import AgentError, Diagnostics
from agent.logging.printable import one_line

log = structlog.get_logger(__name__)

SERVICE_NAME = "codedeploy-commands"
SECURE_SERVICE_NAME = "codedeploy-commands-secure"
# botocore finds ``<service>/<api-version>/service-2.json`` under this folder.
MODEL_DATA_PATH = Path(__file__).resolve().parent / "data"
AGENT_VERSION_HEADER = "x-amz-codedeploy-agent-version"
DEPLOYMENT_SYSTEM = "CodeDeploy"

# botocore retries a failed call once more (standard mode: throttling, 5xx, connection
# errors and timeouts, with its own jittered back-off and retry quota). More would only
# stack under the poll loop's back-off; a long poll that times out is simply polled again.
DEFAULT_MAX_ATTEMPTS = 2
CONNECT_TIMEOUT_SECONDS = 10.0

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
_REGION_NAME = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+-\d+$")
# Partitions whose domain is not amazonaws.com (botocore's endpoints.json, legacy rules).
_PARTITION_DOMAINS = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
    ("eusc-", "amazonaws.eu"),
)
_MESSAGE_LIMIT = 200


class CommandServiceError(AgentError):
    """A call to the command service failed, or its answer breaks the protocol.

    ``throttled`` says the service asked us to slow down; ``retryable`` says the same call
    may succeed later without anyone changing anything (throttling, 5xx, network trouble).
    ``code`` is the service's error code, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        code: str = "",
        throttled: bool = False,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.throttled = throttled
        self.retryable = retryable or throttled


class CommandStatus(str, enum.Enum):
    """Status of a host command as the service sees it."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class CommandServiceSettings:
    """Everything the client needs to know, taken from the configuration at start-up.

    ``max_attempts`` counts botocore's own attempts per call (1 = no retry by botocore).
    """

    region: str
    endpoint_url: Optional[str] = None
    proxy_uri: Optional[str] = None
    use_fips: bool = False
    enable_auth_policy: bool = False
    read_timeout: float = 80.0
    agent_version: str = __version__
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if not _REGION_NAME.match(self.region):
            raise CommandServiceError(f"{self.region!r} is not an AWS region name")
        if not self.agent_version.isprintable() or not self.agent_version.isascii():
            raise CommandServiceError(f"agent version {self.agent_version!r} is not header text")
        if self.read_timeout <= 0 or self.max_attempts < 1:
            raise CommandServiceError("command service read timeout and attempts must be > 0")

    @property
    def service_name(self) -> str:
        """The botocore service (and endpoint prefix) this configuration talks to."""
        return SECURE_SERVICE_NAME if self.enable_auth_policy else SERVICE_NAME

    @classmethod
    def from_config(
        cls, config: AgentConfig, region: str, agent_version: str = __version__
    ) -> CommandServiceSettings:
        overridden = config.deploy_control_endpoint is not None
        if config.use_fips_mode and not overridden and region not in FIPS_REGIONS:
            raise ConfigError(
                f"configuration key use_fips_mode is true but region {region} has no FIPS"
                f" endpoints (only {', '.join(sorted(FIPS_REGIONS))})"
            )
        return cls(
            region=region,
            endpoint_url=config.deploy_control_endpoint,
            proxy_uri=config.proxy_uri,
            use_fips=config.use_fips_mode,
            enable_auth_policy=config.enable_auth_policy,
            read_timeout=config.http_read_timeout,
            agent_version=agent_version,
        )


@dataclass(frozen=True)
class HostCommand:
    """A command the service handed to this host."""

    host_command_identifier: str
    host_identifier: str
    deployment_execution_id: str
    command_name: str
    nonce: Optional[int] = None


@dataclass(frozen=True)
class DeploymentSpecificationEnvelope:
    """The generic envelope of a deployment specification, not yet verified nor parsed.

    ``payload`` may hold a GitHub token: it is kept out of the repr so it never reaches a log.
    """

    deployment_system: str
    format: str
    payload: str = field(repr=False)


def hide_url_user_info(url: str) -> str:
    """The URL without the user name and password a proxy URI may carry."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def command_service_endpoint(settings: CommandServiceSettings) -> str:
    """The URL the client uses: the configured override, or the AWS agent's rule.

    ``https://codedeploy-commands[-secure][-fips].<region>.<domain>``, where the domain is
    that of the region's partition (``amazonaws.com``, ``amazonaws.com.cn`` in China, ...);
    botocore's legacy endpoint rules give the same name for the shipped model.
    """
    if settings.endpoint_url:
        return settings.endpoint_url
    domain = "amazonaws.com"
    for prefix, partition_domain in _PARTITION_DOMAINS:
        if settings.region.startswith(prefix):
            domain = partition_domain
            break
    host = settings.service_name + ("-fips" if settings.use_fips else "")
    return f"https://{host}.{settings.region}.{domain}"


def _agent_version_header(agent_version: str) -> Callable[..., None]:
    def add_header(request: Any, **_: Any) -> None:
        request.headers[AGENT_VERSION_HEADER] = agent_version

    return add_header


def new_command_service_client(
    settings: CommandServiceSettings, credentials: Optional[Credentials] = None
) -> BotocoreCommandServiceClient:
    """Build the botocore client from the shipped model (reads the model files from disk).

    A private botocore session is created for it, so the environment and shared AWS files
    are read as by any SDK; ``credentials`` (static or refreshable) replace its
    credential chain when given.
    """
    session = new_botocore_session(credentials)
    loader = session.get_component("data_loader")
    # Our data folder comes first: the service models, and an endpoints.json that holds
    # only the partitions (the endpoint is always given explicitly), which spares the
    # daemon the 7 MB that botocore's full endpoint list takes once parsed.
    loader.search_paths.insert(0, str(MODEL_DATA_PATH))
    proxies = (
        {"http": settings.proxy_uri, "https": settings.proxy_uri} if settings.proxy_uri else None
    )
    config = Config(
        region_name=settings.region,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=settings.read_timeout,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        proxies=proxies,
        user_agent_extra=f"codedeploy-agent-py/{settings.agent_version}",
    )
    # Always explicit, as in the AWS agent: what we log is what is used, and neither
    # AWS_ENDPOINT_URL* nor AWS_USE_FIPS_ENDPOINT can send the agent elsewhere.
    endpoint = command_service_endpoint(settings)
    # botocore directly: boto3 would add nothing here but its import (and s3transfer's).
    client = session.create_client(
        settings.service_name, region_name=settings.region, endpoint_url=endpoint, config=config
    )
    client.meta.events.register("before-sign", _agent_version_header(settings.agent_version))
    log.info(
        "command service client ready",
        endpoint=hide_url_user_info(endpoint),
        proxy=hide_url_user_info(settings.proxy_uri) if settings.proxy_uri else None,
        service=settings.service_name,
    )
    return BotocoreCommandServiceClient(client, settings)


def translate_error(
    operation: str, error: Exception, endpoint: str, proxy_uri: Optional[str] = None
) -> CommandServiceError:
    """Turn a botocore failure into a one-line :class:`CommandServiceError` with retry hints.

    botocore's own messages are not reused: they can span lines, and only the pieces named
    here (code, status, the service's message) ever reach the operator.
    """
    where = hide_url_user_info(endpoint)
    prefix = f"command service {operation}"
    if isinstance(error, ClientError):
        details: Mapping[str, Any] = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(details.get("Code") or "").strip() or "UnknownError"
        throttled = code in _THROTTLING_CODES or status == 429
        retryable = throttled or code in _TRANSIENT_CODES or (status or 0) >= 500
        reason = one_line(str(details.get("Message") or ""), _MESSAGE_LIMIT)
        http = f" (HTTP {status})" if status else ""
        return CommandServiceError(
            f"{prefix} failed: {code}{http}" + (f": {reason}" if reason else ""),
            operation=operation,
            code=code,
            throttled=throttled,
            retryable=retryable,
        )
    message: str
    retryable = True
    if isinstance(error, ReadTimeoutError):
        message = f"{prefix} got no answer from {where} within the read timeout"
    elif isinstance(error, ConnectTimeoutError):
        message = f"{prefix} could not connect to {where} in time"
    elif isinstance(error, ProxyConnectionError):
        proxy = hide_url_user_info(proxy_uri) if proxy_uri else "the proxy"
        message = f"{prefix} could not connect through proxy {proxy}"
    elif isinstance(error, SSLError):
        message = f"{prefix} failed: TLS error talking to {where}"
    elif isinstance(error, EndpointConnectionError):
        message = f"{prefix} could not connect to {where}"
    elif isinstance(error, ConnectionClosedError):
        message = f"{prefix} failed: {where} closed the connection without an answer"
    elif isinstance(error, HTTPClientError):
        message = f"{prefix} failed: the connection to {where} broke"
    elif isinstance(error, CredentialRetrievalError):
        message = f"{prefix} failed: AWS credentials could not be fetched"
    elif isinstance(error, NoCredentialsError):
        message = f"{prefix} failed: no AWS credentials were found"
        retryable = False
    elif isinstance(error, PartialCredentialsError):
        message = f"{prefix} failed: the AWS credentials are incomplete"
        retryable = False
    elif isinstance(error, ParamValidationError):
        report = str(error.kwargs.get("report", "")).strip().splitlines()
        message = (
            f"{prefix} request is invalid: {one_line(report[0] if report else '', _MESSAGE_LIMIT)}"
        )
        retryable = False
    else:
        message = f"{prefix} failed: {type(error).__name__}"
        retryable = False
    return CommandServiceError(message, operation=operation, retryable=retryable)


def _diagnostics_envelope(diagnostics: Diagnostics) -> Dict[str, str]:
    return {"Format": "JSON", "Payload": diagnostics.to_payload()}


class BotocoreCommandServiceClient:
    """The five operations of the command service, typed, with the answers checked: the
    client the daemon polls with (it fits the poller's ``CommandServiceClient``)."""

    def __init__(self, boto_client: Any, settings: CommandServiceSettings) -> None:
        self._client = boto_client
        self._settings = settings

    @property
    def settings(self) -> CommandServiceSettings:
        return self._settings

    @property
    def endpoint_url(self) -> str:
        return str(self._client.meta.endpoint_url)

    @property
    def boto_client(self) -> Any:
        """The underlying botocore client (for its configuration; calls go through this class)."""
        return self._client

    def _call(self, operation: str, **parameters: Any) -> Dict[str, Any]:
        method = getattr(self._client, xform_name(operation))
        try:
            response: Dict[str, Any] = method(**parameters)
        except (BotoCoreError, ClientError) as error:
            raise translate_error(
                operation, error, self.endpoint_url, self._settings.proxy_uri
            ) from None
        return response

    def _status(self, operation: str, response: Mapping[str, Any]) -> Optional[CommandStatus]:
        value = response.get("CommandStatus")
        if value is None:
            return None
        try:
            return CommandStatus(value)
        except ValueError:
            raise CommandServiceError(
                f"command service {operation} answered with unknown CommandStatus {one_line(str(value), _MESSAGE_LIMIT)!r}",
                operation=operation,
            ) from None

    def poll_host_command(self, host_identifier: str) -> Optional[HostCommand]:
        """Long-poll for the next command of this host; None when there is none."""
        response = self._call("PollHostCommand", HostIdentifier=host_identifier)
        command = response.get("HostCommand")
        if not command:
            return None
        operation = "PollHostCommand"
        owner = command.get("HostIdentifier")
        if owner != host_identifier:
            raise CommandServiceError(
                f"command service returned a command for host {one_line(str(owner), _MESSAGE_LIMIT)!r},"
                f" not for this host {host_identifier!r}",
                operation=operation,
            )
        missing = [
            key
            for key in ("HostCommandIdentifier", "DeploymentExecutionId", "CommandName")
            if not command.get(key)
        ]
        if missing:
            raise CommandServiceError(
                f"command service returned a command without {', '.join(missing)}",
                operation=operation,
            )
        nonce = command.get("Nonce")
        return HostCommand(
            host_command_identifier=str(command["HostCommandIdentifier"]),
            host_identifier=str(owner),
            deployment_execution_id=str(command["DeploymentExecutionId"]),
            command_name=str(command["CommandName"]),
            # Only kept, never used: a nonce that is not a number must not lose the command.
            nonce=int(nonce) if isinstance(nonce, int) or str(nonce).isdigit() else None,
        )

    def get_deployment_specification(
        self, deployment_execution_id: str, host_identifier: str
    ) -> DeploymentSpecificationEnvelope:
        """The generic envelope of the command's deployment specification."""
        operation = "GetDeploymentSpecification"
        response = self._call(
            operation, DeploymentExecutionId=deployment_execution_id, HostIdentifier=host_identifier
        )
        system = response.get("DeploymentSystem")
        if system != DEPLOYMENT_SYSTEM:
            raise CommandServiceError(
                f"command service returned a specification for deployment system"
                f" {one_line(str(system), _MESSAGE_LIMIT)!r}, not {DEPLOYMENT_SYSTEM}",
                operation=operation,
            )
        envelope = (response.get("DeploymentSpecification") or {}).get("GenericEnvelope") or {}
        envelope_format, payload = envelope.get("Format"), envelope.get("Payload")
        if not envelope_format or payload is None:
            raise CommandServiceError(
                f"command service returned no deployment specification for {deployment_execution_id}",
                operation=operation,
            )
        return DeploymentSpecificationEnvelope(system, str(envelope_format), str(payload))

    def put_host_command_acknowledgement(
        self, host_command_identifier: str, is_noop: bool
    ) -> Optional[CommandStatus]:
        """Acknowledge a command; the service's status of it, or None when it gave none."""
        operation = "PutHostCommandAcknowledgement"
        response = self._call(
            operation,
            HostCommandIdentifier=host_command_identifier,
            Diagnostics={"Format": "JSON", "Payload": json.dumps({"IsCommandNoop": is_noop})},
        )
        return self._status(operation, response)

    def put_host_command_complete(
        self, host_command_identifier: str, status: CommandStatus, diagnostics: Diagnostics
    ) -> None:
        """Report a command's outcome: Succeeded or Failed, with its diagnostics."""
        if status not in (CommandStatus.SUCCEEDED, CommandStatus.FAILED):
            raise ValueError(f"a command completes as Succeeded or Failed, not {status.value}")
        self._call(
            "PutHostCommandComplete",
            HostCommandIdentifier=host_command_identifier,
            CommandStatus=status.value,
            Diagnostics=_diagnostics_envelope(diagnostics),
        )

    def post_host_command_update(
        self,
        host_command_identifier: str,
        diagnostics: Optional[Diagnostics] = None,
        estimated_completion: Optional[datetime] = None,
    ) -> Optional[CommandStatus]:
        """Report progress of a running command; the service's status of it, if given."""
        operation = "PostHostCommandUpdate"
        parameters: Dict[str, Any] = {"HostCommandIdentifier": host_command_identifier}
        if diagnostics is not None:
            parameters["Diagnostics"] = _diagnostics_envelope(diagnostics)
        if estimated_completion is not None:
            parameters["EstimatedCompletionTime"] = estimated_completion
        return self._status(operation, self._call(operation, **parameters))
