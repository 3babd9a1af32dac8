"""Opening the envelope of a deployment specification (docs/behaviour.md sections 3 and 6).

The command service wraps each specification in a ``GenericEnvelope`` {``Format``,
``Payload``}. ``PKCS7/JSON`` is verified before any of its JSON is looked at: always its
integrity, and its CA chain and signer name when the operator configured them; its signer
is logged with the deployment either way. ``TEXT/JSON`` is unsigned and accepted only when
the operator allows it (``allow_unsigned_deployment_specs``, for a self-hosted service) or
for ``codedeploy-local``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import structlog

from agent.configuration.model import AgentConfig
from agent.deployment_specification.model import DeploymentSpecification
from agent.deployment_specification.parser import parse_deployment_specification
from agent.deployment_specification.signature import (
    SignerTrust,
    SpecSignatureError,
    describe_signer_trust,
    verify_pkcs7_payload_with_openssl,
)
from agent.deployment_specification.verified_payloads import VerifiedPayloads

log = structlog.get_logger(__name__)

SIGNED_FORMAT = "PKCS7/JSON"
UNSIGNED_FORMAT = "TEXT/JSON"
REGION_PLACEHOLDER = "{region}"

__all__ = [
    "SIGNED_FORMAT",
    "UNSIGNED_FORMAT",
    "SignatureSettings",
    "SpecSignatureError",
    "expected_signer_name",
    "open_deployment_specification",
]


def expected_signer_name(template: str, region: str) -> str:
    """The signer common name for ``region``: ``{region}`` replaced, ``.com.cn`` in China.

    The China suffix is added only to an ``amazonaws.com`` name, so an operator's own
    signer name (a self-hosted service) is taken as written.
    """
    if REGION_PLACEHOLDER in template and not region:
        raise SpecSignatureError(
            f"deployment_signer_name {template!r} names {{region}} but the region is unknown"
        )
    name = template.replace(REGION_PLACEHOLDER, region)
    if region.startswith("cn-") and name.endswith(".amazonaws.com"):
        name += ".cn"
    return name


@dataclass(frozen=True)
class SignatureSettings:
    """What a specification must satisfy to be used: who may sign it, and whether it must be.

    ``ca_file`` None means integrity only; ``expected_signer`` is checked only with a
    ``ca_file`` (a name anyone can put in a certificate proves nothing without a chain).
    """

    ca_file: SignerTrust = None
    expected_signer: Optional[str] = None
    allow_unsigned: bool = False
    # The program's environment, which openssl runs with (None: this process's own). Not
    # compared and never shown: it is where the program is, not what it checks.
    environment: Optional[Mapping[str, str]] = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(
        cls, config: AgentConfig, region: str, environ: Optional[Mapping[str, str]] = None
    ) -> SignatureSettings:
        template = config.deployment_signer_name
        checked = config.deployment_signer_ca_file is not None
        return cls(
            ca_file=config.deployment_signer_ca_file,
            expected_signer=(
                expected_signer_name(template, region) if template and checked else None
            ),
            allow_unsigned=config.allow_unsigned_deployment_specs,
            environment=environ,
        )

    def policy(self) -> str:
        """The policy in force, in one phrase (start-up log line, ``status``)."""
        policy = describe_signer_trust(self.ca_file, self.expected_signer)
        return policy + ("; unsigned specifications accepted" if self.allow_unsigned else "")


def open_deployment_specification(
    envelope_format: str,
    payload: str,
    settings: SignatureSettings,
    verified: Optional[VerifiedPayloads] = None,
) -> DeploymentSpecification:
    """Verify (``PKCS7/JSON``) or accept (``TEXT/JSON``) a specification, then parse it.

    Verifying reads ``settings.ca_file`` and runs ``openssl``, unless ``verified``
    remembers this very payload checked against the same trust (the daemon's later
    commands of a deployment); the signer of a signed specification is logged with its
    deployment id.
    """
    if envelope_format == SIGNED_FORMAT:
        if verified is not None:
            signed = verified.verify(
                payload, settings.ca_file, settings.expected_signer, settings.environment
            )
        else:
            signed = verify_pkcs7_payload_with_openssl(
                payload, settings.ca_file, settings.expected_signer, settings.environment
            )
        spec = parse_deployment_specification(signed.text)
        signer = signed.signer
        log.info(
            "deployment specification signed by",
            signer_subject=signer.subject,
            signer_issuer=signer.issuer,
            signer_not_before=signer.not_before,
            signer_not_after=signer.not_after,
            signer_sha256=signer.sha256_fingerprint,
            verified=describe_signer_trust(settings.ca_file, settings.expected_signer),
            deployment_id=spec.deployment_id,
        )
        return spec
    if envelope_format == UNSIGNED_FORMAT:
        if not settings.allow_unsigned:
            raise SpecSignatureError(
                "deployment specification refused: the service sent an unsigned (TEXT/JSON)"
                " specification; set allow_unsigned_deployment_specs: true only for a"
                " self-hosted service you trust"
            )
        return parse_deployment_specification(payload)
    raise SpecSignatureError(
        f"deployment specification has an unsupported envelope format {envelope_format[:40]!r}"
        f" (expected {SIGNED_FORMAT} or {UNSIGNED_FORMAT})"
    )
