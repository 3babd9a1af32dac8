"""How S3 and GitHub revisions are fetched: endpoints, credentials, retries, parallel parts.

Resolved once from the agent configuration (and, for the daemon, the host's identity)
and passed to the fetchers as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from agent.aws_clients.client_settings import (
    MIN_POOL_CONNECTIONS,
    ClientSettings,
    S3ClientSettings,
)
from agent.configuration.model import AgentConfig
from agent.revision.errors import RevisionSourceError

if TYPE_CHECKING:
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    from agent.aws_clients.clients import S3Clients
    from agent.aws_clients.wire_log import WireLogSettings

MIB = 1 << 20


@dataclass(frozen=True)
class FetchSettings:
    """How S3 and GitHub revisions are fetched, resolved once from the configuration.

    ``credentials`` (botocore credentials, static or refreshable) replace botocore's
    default chain for S3 when given; ``region`` None lets botocore find it. ``max_attempts``
    counts tries per request, retries included. Objects of ``parallel_threshold`` bytes or
    more are fetched as ``part_size`` ranges by ``max_workers`` threads. ``wire_log``
    (``log_aws_wire``) makes the S3 client write its traffic there, secrets redacted.
    ``s3_clients``, when given, keeps the S3 client built for these settings for the next
    download (a long-running agent); without it each download builds its own.
    """

    region: Optional[str] = None
    s3_endpoint_override: Optional[str] = None
    proxy_uri: Optional[str] = None
    use_fips: bool = False
    github_api_endpoint: str = "https://api.github.com"
    credentials: Optional[Credentials] = field(default=None, repr=False)
    max_attempts: int = 4
    parallel_threshold: int = 16 * MIB
    part_size: int = 8 * MIB
    max_workers: int = 4
    progress_interval_seconds: float = 5.0
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    # First back-off of the GitHub retries; doubled on each further attempt.
    retry_delay_seconds: float = 1.0
    wire_log: Optional[WireLogSettings] = None
    # Not part of the settings' identity: the cache is keyed by the other fields.
    s3_clients: Optional[S3Clients] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_workers < 1 or self.part_size < 1:
            raise RevisionSourceError("fetch attempts, workers and part size must be >= 1")
        if min(self.connect_timeout_seconds, self.read_timeout_seconds) <= 0:
            raise RevisionSourceError("fetch timeouts must be > 0")

    @property
    def s3_client_settings(self) -> S3ClientSettings:
        """What the S3 client is built with (the key of the daemon's client cache)."""
        return S3ClientSettings(
            client=ClientSettings(
                region=self.region,
                endpoint_url=self.s3_endpoint_override,
                proxy_uri=self.proxy_uri,
                use_fips=self.use_fips,
                connect_timeout_seconds=self.connect_timeout_seconds,
                read_timeout_seconds=self.read_timeout_seconds,
                max_attempts=self.max_attempts,
            ),
            credentials=self.credentials,
            max_pool_connections=max(MIN_POOL_CONNECTIONS, self.max_workers + 2),
            wire_log=self.wire_log,
        )

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        region: Optional[str] = None,
        credentials: Optional[Credentials] = None,
        wire_log: Optional[WireLogSettings] = None,
        s3_clients: Optional[S3Clients] = None,
    ) -> FetchSettings:
        return cls(
            region=region,
            s3_endpoint_override=config.s3_endpoint_override,
            proxy_uri=config.proxy_uri,
            use_fips=config.use_fips_mode,
            github_api_endpoint=config.github_api_endpoint,
            credentials=credentials,
            wire_log=wire_log,
            s3_clients=s3_clients,
        )


DEFAULT_FETCH_SETTINGS = FetchSettings()
