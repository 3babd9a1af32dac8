"""Signing a deployment specification as a ``PKCS7/JSON`` envelope's payload.

The JSON's bytes are signed as they are (no MIME canonicalisation) into a PEM PKCS#7
SignedData message with the content attached and the signer's certificate included, the
shape the agent verifies with ``openssl smime -verify`` (docs/behaviour.md section 6):
integrity always, and the chain to ``ca.pem`` and the signer's name when the agent is
configured with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

from agent.deployment_specification.envelope import SIGNED_FORMAT
from server.signer.authority import SignerError, SignerFiles


@dataclass(frozen=True)
class DeploymentSigner:
    """The signer's certificate and key, read once at start-up."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def envelope_format(self) -> str:
        return SIGNED_FORMAT

    def sign(self, specification_json: str) -> str:
        """The PEM PKCS#7 message carrying ``specification_json``."""
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(specification_json.encode("utf-8"))
            .add_signer(self.certificate, self.key, hashes.SHA256())
            .sign(serialization.Encoding.PEM, [pkcs7.PKCS7Options.Binary])
        )
        return signed.decode("ascii")


def load_deployment_signer_from_disk(files: SignerFiles) -> DeploymentSigner:
    try:
        certificate = x509.load_pem_x509_certificate(files.certificate_file.read_bytes())
        key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise SignerError(f"signer files in {files.folder} cannot be read: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignerError(f"{files.key_file} does not hold the signer's EC key")
    return DeploymentSigner(certificate, key)
