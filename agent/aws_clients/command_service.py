"""A typed client of the CodeDeploy command service (docs/behaviour.md section 5), driven by botocore.

botocore has no model of this API, so the package ships one (``data/``) and the client is
built from it, by the builder every AWS client of the agent shares (proxy, timeouts,
retries, User-Agent: :mod:`agent.aws_clients.clients`): JSON 1.1, SigV4. This module adds
what the AWS agent adds to the SDK client (the endpoint rule, the agent-version header,
the long-poll read timeout), checks what the service answers, and turns every failed call
into a :class:`CommandServiceError` with the one line of :mod:`agent.aws_clients.errors`
and retry hints for the poll loop, which does its own back-off. A call's first attempt
goes on the fast path of :mod:`agent.aws_clients.direct_calls` where it may (the same
request, without botocore's per-call machinery); its other attempts, and every call the
fast path cannot make, go through botocore.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import structlog
from botocore import xform_name  # type: ignore[import-untyped]
from botocore.credentials import (  # type: ignore[import-untyped]
    Credentials,
)

from agent import __version__
from agent.aws_clients.client_settings import (
    CONNECT_TIMEOUT_SECONDS,
    ClientSettings,
    hide_url_user_info,
)
from agent.aws_clients.clients import new_aws_client, new_aws_client_and_session
from agent.aws_clients.direct_calls import DirectCalls, direct_calls_for_client
from agent.aws_clients.errors import AWS_CALL_ERRORS, MESSAGE_LIMIT, describe_aws_failure
from agent.aws_clients.sigv4 import SigningCredentials
from agent.aws_clients.wire_log import WireLogSettings
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
# The longest waits botocore's standard mode makes before a second attempt (its jitter
# picks up to this): a throttled call waits longer.
THROTTLED_BACKOFF_SECONDS = 1.0
BACKOFF_SECONDS = 0.05
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
    # The fast path in front of botocore (agent/aws_clients/direct_calls.py).
    direct_calls: bool = True

    def __post_init__(self) -> None:
        if not _REGION_NAME.match(self.region):
            raise CommandServiceError(f"{self.region!r} is not an AWS region name")
        try:
            # The rules every AWS client of the agent follows (the version as header text,
            # timeouts, attempts) are ClientSettings'; here they are this family's error.
            self.client_settings  # noqa: B018
        except ValueError as error:
            raise CommandServiceError(f"command service client: {error}") from None

    @property
    def service_name(self) -> str:
        """The botocore service (and endpoint prefix) this configuration talks to."""
        return SECURE_SERVICE_NAME if self.enable_auth_policy else SERVICE_NAME

    @property
    def client_settings(self) -> ClientSettings:
        """What the botocore client is built with; the endpoint always explicit, as in the
        AWS agent: what we log is what is used, and neither ``AWS_ENDPOINT_URL*`` nor
        ``AWS_USE_FIPS_ENDPOINT`` can send the agent elsewhere."""
        return ClientSettings(
            region=self.region,
            endpoint_url=command_service_endpoint(self),
            proxy_uri=self.proxy_uri,
            use_fips=self.use_fips,
            connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
            read_timeout_seconds=self.read_timeout,
            max_attempts=self.max_attempts,
            agent_version=self.agent_version,
        )

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
    settings: CommandServiceSettings,
    credentials: Optional[Credentials] = None,
    wire_log: Optional[WireLogSettings] = None,
) -> BotocoreCommandServiceClient:
    """Build the botocore client from the shipped model (reads the model files from disk).

    The environment and shared AWS files are read as by any SDK; ``credentials`` (static
    or refreshable) replace the credential chain when given; ``wire_log`` makes the
    client write its traffic there.
    """
    client_settings = settings.client_settings
    # Our data folder comes first: the service models, and an endpoints.json that holds
    # only the partitions (the endpoint is always given explicitly), which spares the
    # daemon the 7 MB that botocore's full endpoint list takes once parsed.
    client, session = new_aws_client_and_session(
        settings.service_name,
        client_settings,
        credentials=credentials,
        model_path=MODEL_DATA_PATH,
        wire_log=wire_log,
    )
    client.meta.events.register("before-sign", _agent_version_header(settings.agent_version))
    # The wire log records what botocore sends: with one, botocore makes every call.
    direct = (
        None
        if wire_log is not None or not settings.direct_calls
        else direct_calls_for_client(
            client,
            _signing_credentials(session),
            user_agent=str(client.meta.config.user_agent),
            extra_headers={AGENT_VERSION_HEADER: settings.agent_version},
            connect_timeout=client_settings.connect_timeout_seconds,
            read_timeout=client_settings.read_timeout_seconds,
        )
    )
    retry_client = None
    if direct is not None and settings.max_attempts > 1:
        retry_client = _built_once(
            lambda: _retry_client(settings, session.get_credentials() or credentials)
        )
    log.info(
        "command service client ready",
        endpoint=hide_url_user_info(str(client_settings.endpoint_url)),
        proxy=hide_url_user_info(settings.proxy_uri) if settings.proxy_uri else None,
        service=settings.service_name,
        direct_calls=direct is not None,
    )
    return BotocoreCommandServiceClient(client, settings, direct, retry_client)


def _retry_client(settings: CommandServiceSettings, credentials: Optional[Credentials]) -> Any:
    """A botocore client like the main one, making one attempt fewer: the attempts of a
    call whose first went on the fast path and failed (reads the model from disk)."""
    fewer = dataclasses.replace(settings, max_attempts=settings.max_attempts - 1)
    client = new_aws_client(
        fewer.service_name,
        fewer.client_settings,
        credentials=credentials,
        model_path=MODEL_DATA_PATH,
    )
    client.meta.events.register("before-sign", _agent_version_header(settings.agent_version))
    return client


def _built_once(build: Callable[[], Any]) -> Callable[[], Any]:
    """``build``, called at the first call only (thread-safe)."""
    lock = threading.Lock()
    built: List[Any] = []

    def once() -> Any:
        with lock:
            if not built:
                built.append(build())
            return built[0]

    return once


def _signing_credentials(session: Any) -> Callable[[], Optional[SigningCredentials]]:
    """The credentials the session's clients sign with, as they are now (refreshed by
    botocore when they expire); None when there are none."""

    def current() -> Optional[SigningCredentials]:
        found = session.get_credentials()
        if found is None:
            return None
        frozen = found.get_frozen_credentials()
        return SigningCredentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


def translate_error(
    operation: str, error: Exception, endpoint: str, proxy_uri: Optional[str] = None
) -> CommandServiceError:
    """Turn a failed call into a one-line :class:`CommandServiceError` with retry hints
    (the words are those of :mod:`agent.aws_clients.errors`, shared with S3)."""
    failure = describe_aws_failure(error, endpoint=endpoint, proxy_uri=proxy_uri)
    return CommandServiceError(
        f"command service {operation} {failure.reason_at_endpoint}",
        operation=operation,
        code=failure.code,
        throttled=failure.throttled,
        retryable=failure.retryable,
    )


def _is_json(value: Any) -> bool:
    """Whether a parameter goes on the wire as it is (a timestamp, say, is botocore's to
    serialize)."""
    if isinstance(value, dict):
        return all(_is_json(item) for item in value.values())
    return isinstance(value, (str, bool, int, float)) or value is None


def _diagnostics_envelope(diagnostics: Diagnostics) -> Dict[str, str]:
    return {"Format": "JSON", "Payload": diagnostics.to_payload()}


class BotocoreCommandServiceClient:
    """The five operations of the command service, typed, with the answers checked: the
    client the daemon polls with (it fits the poller's ``CommandServiceClient``)."""

    def __init__(
        self,
        boto_client: Any,
        settings: CommandServiceSettings,
        direct: Optional[DirectCalls] = None,
        retry_client: Optional[Callable[[], Any]] = None,
    ) -> None:
        self._client = boto_client
        self._settings = settings
        self._direct = direct
        self._retry_client = retry_client
        self._chance = random.Random()  # noqa: S311 - jitter, not security

    @property
    def direct_calls(self) -> Optional[DirectCalls]:
        """The fast path in front of botocore (agent/aws_clients/direct_calls.py), if on."""
        return self._direct

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
        if self._direct is not None and all(_is_json(value) for value in parameters.values()):
            answer = self._call_directly(operation, parameters)
            if answer is not None:
                return answer
        return self._call_through(self._client, operation, parameters)

    def _call_directly(
        self, operation: str, parameters: Dict[str, Any]
    ) -> Optional[Dict[str, Any]]:
        """The call's first attempt on the fast path; the others, after a failure that
        botocore would try again, through a botocore client left with the attempts that
        remain (one attempt in all per configured attempt, as through botocore alone).
        None when the fast path cannot take the call."""
        assert self._direct is not None
        try:
            return self._direct.call(operation, parameters)
        except AWS_CALL_ERRORS as error:
            failed = translate_error(operation, error, self.endpoint_url, self._settings.proxy_uri)
        if not failed.retryable or self._settings.max_attempts < 2 or self._retry_client is None:
            raise failed
        # botocore's standard back-off before its second attempt.
        scale = THROTTLED_BACKOFF_SECONDS if failed.throttled else BACKOFF_SECONDS
        time.sleep(self._chance.random() * scale)
        return self._call_through(self._retry_client(), operation, parameters)

    def _call_through(
        self, client: Any, operation: str, parameters: Dict[str, Any]
    ) -> Dict[str, Any]:
        method = getattr(client, xform_name(operation))
        try:
            response: Dict[str, Any] = method(**parameters)
        except AWS_CALL_ERRORS as error:
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
                f"command service {operation} answered with unknown CommandStatus {one_line(str(value), MESSAGE_LIMIT)!r}",
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
                f"command service returned a command for host {one_line(str(owner), MESSAGE_LIMIT)!r},"
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
                f" {one_line(str(system), MESSAGE_LIMIT)!r}, not {DEPLOYMENT_SYSTEM}",
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
