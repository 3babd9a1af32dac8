"""Who this host is to the command service: its host identifier and its region.

Three sources (docs/behaviour.md sections 3 and 5): ``AWS_HOST_IDENTIFIER`` and ``AWS_REGION`` in the
environment override the others; otherwise an on-premises file, when it exists, names an
IAM user or session ARN and the region; otherwise the EC2 metadata service gives the
instance ARN and the region of its identity document. The on-premises file is read even
when the environment names both, because its credentials still apply. One log line says
which identity, which source and which credentials are in use; never a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import structlog

from agent.aws_clients.instance_metadata import InstanceMetadataClient, RetryPolicy
from agent.configuration.model import AgentConfig
from agent.configuration.on_premises import OnPremisesConfig, read_on_premises_config
from agent.errors import AgentError

log = structlog.get_logger(__name__)

ENVIRONMENT = "environment"
ON_PREMISES = "on-premises"
EC2_IMDS = "ec2-imds"

HOST_IDENTIFIER_VARIABLE = "AWS_HOST_IDENTIFIER"
REGION_VARIABLE = "AWS_REGION"
METADATA_DISABLED_VARIABLE = "AWS_EC2_METADATA_DISABLED"

_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


class HostIdentityError(AgentError):
    """The host identifier or region cannot be determined."""


@dataclass(frozen=True)
class HostIdentity:
    """The identity the agent polls with.

    ``source`` says where the identity came from (``environment``, ``on-premises`` or
    ``ec2-imds``); ``overridden_by`` names the environment variables that replaced a part
    of it; ``on_premises`` is set when an on-premises file names the credentials to use.
    """

    host_identifier: str
    region: str
    source: str
    on_premises: Optional[OnPremisesConfig] = None
    overridden_by: Tuple[str, ...] = ()

    @property
    def credential_source(self) -> str:
        """Where the AWS credentials come from, in words fit for a log line."""
        if self.on_premises is not None:
            return self.on_premises.credential_source
        return "the default AWS credential chain"


def resolve_host_identity(
    config: AgentConfig,
    environ: Mapping[str, str],
    *,
    imds: Optional[InstanceMetadataClient] = None,
    imds_retry: Optional[RetryPolicy] = None,
) -> HostIdentity:
    """Find this host's identity: reads the on-premises file, may ask EC2 metadata (network).

    ``imds`` replaces the client built from the environment and ``disable_imds_v1``;
    ``imds_retry`` bounds how long that client waits for metadata that does not answer.
    Every failure is a :class:`HostIdentityError` with a one-line message.
    """
    identifier = environ.get(HOST_IDENTIFIER_VARIABLE, "").strip()
    region = environ.get(REGION_VARIABLE, "").strip()
    if region and not _REGION.match(region):
        raise HostIdentityError(f"{REGION_VARIABLE} {region[:64]!r} is not a region name")
    overridden_by = tuple(
        name
        for name, value in ((HOST_IDENTIFIER_VARIABLE, identifier), (REGION_VARIABLE, region))
        if value
    )
    on_premises = _read_on_premises_if_present(config)

    if identifier and region:
        identity = HostIdentity(identifier, region, ENVIRONMENT, on_premises)
    elif on_premises is not None:
        identity = HostIdentity(
            identifier or on_premises.host_identifier,
            region or on_premises.region,
            ON_PREMISES,
            on_premises,
            overridden_by,
        )
    else:
        instance_arn, instance_region = _ask_instance_metadata(config, environ, imds, imds_retry)
        identity = HostIdentity(
            identifier or instance_arn, region or instance_region, EC2_IMDS, None, overridden_by
        )

    log.info(
        "host identity",
        host_identifier=identity.host_identifier,
        region=identity.region,
        source=identity.source,
        overridden_by=",".join(identity.overridden_by) or None,
        access_from=identity.credential_source,
    )
    return identity


def _read_on_premises_if_present(config: AgentConfig) -> Optional[OnPremisesConfig]:
    path = config.on_premises_config_file
    if not path.exists():
        return None
    try:
        return read_on_premises_config(path)
    except AgentError as error:
        raise HostIdentityError(error.message) from None


def _ask_instance_metadata(
    config: AgentConfig,
    environ: Mapping[str, str],
    imds: Optional[InstanceMetadataClient],
    retry: Optional[RetryPolicy],
) -> Tuple[str, str]:
    hint = (
        f"an on-premises host needs {config.on_premises_config_file}, or"
        f" {HOST_IDENTIFIER_VARIABLE} and {REGION_VARIABLE}"
    )
    if imds is None:
        if environ.get(METADATA_DISABLED_VARIABLE, "").strip().lower() == "true":
            raise HostIdentityError(
                f"cannot determine the host identity: EC2 metadata is disabled by"
                f" {METADATA_DISABLED_VARIABLE} ({hint})"
            )
        try:
            imds = InstanceMetadataClient.from_environment(
                environ, disable_v1=config.disable_imds_v1, retry=retry or RetryPolicy()
            )
        except AgentError as error:
            raise HostIdentityError(error.message) from None
    try:
        return imds.fetch_instance_arn()
    except AgentError as error:
        raise HostIdentityError(
            f"cannot determine the EC2 host identity: {error.message} ({hint})"
        ) from None
