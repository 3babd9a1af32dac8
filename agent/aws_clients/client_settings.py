"""What every AWS client of the agent is built with, and how the agent names itself on the wire.

The command service client and the S3 client differ in their service and in a few
service-specific knobs, never in the rest: the proxy (``proxy_uri``), the connect and read
timeouts, botocore's retries, the region and the endpoint rule, and one User-Agent that
names this agent and its version (the GitHub fetcher sends the same one). That rest is a
:class:`ClientSettings`, built by each client's own settings and handed to the one
builder (:mod:`agent.aws_clients.clients`). This module imports no botocore: the settings
of a program that never talks to AWS cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Optional
from urllib.parse import urlsplit, urlunsplit

from agent import __version__

if TYPE_CHECKING:
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    from agent.aws_clients.wire_log import WireLogSettings

AGENT_PRODUCT = "codedeploy-agent-py"
CONNECT_TIMEOUT_SECONDS = 10.0
# botocore opens one connection per thread at most: the S3 part threads and a spare.
MIN_POOL_CONNECTIONS = 10


def agent_user_agent(agent_version: str = __version__) -> str:
    """The product token every HTTP client of the agent adds to its User-Agent."""
    return f"{AGENT_PRODUCT}/{agent_version}"


def hide_url_user_info(url: str) -> str:
    """The URL without the user name and password a proxy URI may carry."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ClientSettings:
    """What a botocore client of the agent is built with, whatever its service.

    ``region`` None lets botocore find one (``codedeploy-local`` without ``AWS_REGION``);
    ``endpoint_url`` None means AWS's endpoint for the region, the FIPS one when
    ``use_fips``. ``max_attempts`` counts botocore's attempts per call, retries included
    (standard mode: throttling, 5xx, connection errors, with its own jittered back-off).
    """

    region: Optional[str] = None
    endpoint_url: Optional[str] = None
    proxy_uri: Optional[str] = None
    use_fips: bool = False
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = 60.0
    max_attempts: int = 2
    agent_version: str = __version__

    def __post_init__(self) -> None:
        # The callers' own settings have refused these with a message of their family.
        if not self.agent_version.isprintable() or not self.agent_version.isascii():
            raise ValueError(f"agent version {self.agent_version!r} is not header text")
        if min(self.connect_timeout_seconds, self.read_timeout_seconds) <= 0:
            raise ValueError("AWS client timeouts must be > 0")
        if self.max_attempts < 1:
            raise ValueError("an AWS client makes at least one attempt per call")

    @property
    def user_agent(self) -> str:
        return agent_user_agent(self.agent_version)

    @property
    def proxies(self) -> Optional[Dict[str, str]]:
        """botocore's proxy map: the one proxy for both schemes, or none."""
        if not self.proxy_uri:
            return None
        return {"http": self.proxy_uri, "https": self.proxy_uri}


@dataclass(frozen=True)
class S3ClientSettings:
    """An S3 client: the common settings, the credentials, and S3's own knobs.

    ``credentials`` (static or refreshable) replace botocore's credential chain when
    given. An ``endpoint_url`` of the client settings (an S3-compatible store) is
    addressed path-style: such stores rarely have per-bucket DNS names.
    ``max_pool_connections`` lets each part thread of a download keep its connection.
    ``wire_log`` makes the client write its traffic there, secrets redacted.
    """

    client: ClientSettings
    credentials: Optional[Credentials] = field(default=None, repr=False)
    max_pool_connections: int = MIN_POOL_CONNECTIONS
    wire_log: Optional[WireLogSettings] = None

    @property
    def path_style(self) -> bool:
        return self.client.endpoint_url is not None
