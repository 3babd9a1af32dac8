"""Test support: a throw-away CA, signer certificates, and signed deployment specifications.

Builds, with the ``openssl`` command, what the command service and the host share: a CA
bundle the agent trusts (``deployment_signer_ca_file``) and a signer whose certificate that
CA issued, and signs JSON into a PEM PKCS#7 message with the content attached, the shape
of a ``PKCS7/JSON`` envelope's payload. Keys are P-256 so that building a kit is fast.
Used by the envelope tests, end-to-end tests, and the self-hosted service's tests.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

DEFAULT_REGION = "us-east-1"
PEM_PKCS7_HEADER = "-----BEGIN PKCS7-----"
PEM_PKCS7_FOOTER = "-----END PKCS7-----"


def signer_name_for(region: str) -> str:
    """AWS's signer common name for ``region``."""
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"codedeploy-signer-{region}{suffix}"


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key, as PEM files."""

    certificate: Path
    key: Path
    common_name: str

    def certificate_pem(self) -> str:
        return self.certificate.read_text(encoding="ascii")


def _openssl(arguments: Sequence[str], stdin: bytes = b"") -> bytes:
    completed = subprocess.run(
        ["openssl", *arguments], input=stdin, capture_output=True, check=False, timeout=60
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"openssl {arguments[0]} failed: {completed.stderr.decode('utf-8', 'replace')}"
        )
    return completed.stdout


def _subject(common_name: str, organization: str) -> str:
    subject = f"/C=US/O={organization.replace('/', '_')}"
    return f"{subject}/CN={common_name.replace('/', '_')}" if common_name else subject


def _make_certificate(
    folder: Path,
    name: str,
    common_name: str,
    extensions: Sequence[str],
    issuer: Credential | None,
    days: int,
    organization: str = "CodeDeploy Test",
) -> Credential:
    folder.mkdir(parents=True, exist_ok=True)
    certificate = folder / f"{name}.pem"
    key = folder / f"{name}.key"
    arguments: List[str] = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-noenc",
        "-keyout",
        str(key),
        "-out",
        str(certificate),
        "-subj",
        _subject(common_name, organization),
        "-days",
        str(days),
    ]
    if issuer is not None:
        arguments += ["-CA", str(issuer.certificate), "-CAkey", str(issuer.key)]
    for extension in extensions:
        arguments += ["-addext", extension]
    _openssl(arguments)
    return Credential(certificate, key, common_name)


def make_root_ca(
    folder: Path, name: str = "root-ca", common_name: str = "CodeDeploy Test Root CA"
) -> Credential:
    """A self-signed CA certificate and key, written as ``<folder>/<name>.pem|.key``."""
    return _make_certificate(
        folder,
        name,
        common_name,
        ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
        None,
        days=30,
    )


def make_intermediate_ca(
    folder: Path,
    issuer: Credential,
    name: str = "intermediate-ca",
    common_name: str = "CodeDeploy Test Intermediate CA",
) -> Credential:
    """A CA certificate issued by ``issuer``."""
    return _make_certificate(
        folder,
        name,
        common_name,
        ["basicConstraints=critical,CA:TRUE,pathlen:0", "keyUsage=critical,keyCertSign,cRLSign"],
        issuer,
        days=30,
    )


def make_signer(
    folder: Path,
    issuer: Credential,
    common_name: str = signer_name_for(DEFAULT_REGION),
    name: str = "signer",
    organization: str = "CodeDeploy Test",
    extensions: Sequence[str] = ("keyUsage=critical,digitalSignature",),
) -> Credential:
    """An end-entity signing certificate with ``common_name`` (none if empty) from ``issuer``."""
    return _make_certificate(
        folder,
        name,
        common_name,
        ["basicConstraints=critical,CA:FALSE", *extensions],
        issuer,
        days=30,
        organization=organization,
    )


def write_ca_bundle(path: Path, *authorities: Credential) -> Path:
    """Concatenate the authorities' certificates into one PEM bundle at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(a.certificate_pem() for a in authorities), encoding="ascii")
    return path


def sign_content(
    content: str | bytes, signer: Credential, extra_certificates: Sequence[Credential] = ()
) -> str:
    """Sign ``content`` into a PEM PKCS#7 SignedData message with the content attached.

    The signer's certificate is included; ``extra_certificates`` (intermediates) too.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    arguments = [
        "smime",
        "-sign",
        "-binary",
        "-nodetach",
        "-md",
        "sha256",
        "-signer",
        str(signer.certificate),
        "-inkey",
        str(signer.key),
        "-outform",
        "PEM",
    ]
    if extra_certificates:
        bundle = signer.certificate.parent / f"{signer.certificate.stem}-extra-certificates.pem"
        write_ca_bundle(bundle, *extra_certificates)
        arguments += ["-certfile", str(bundle)]
    return _openssl(arguments, data).decode("ascii")


def pkcs7_der(pem: str) -> bytes:
    """The DER bytes of a PEM PKCS#7 message."""
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


def pkcs7_pem(der: bytes) -> str:
    """A PEM PKCS#7 message from DER bytes."""
    return f"{PEM_PKCS7_HEADER}\n{base64.encodebytes(der).decode('ascii')}{PEM_PKCS7_FOOTER}\n"


def replace_in_pkcs7(pem: str, old: bytes, new: bytes) -> str:
    """Swap bytes of the DER (same length, so the structure stays valid), as a tamperer would."""
    assert len(old) == len(new), "the replacement must keep the length"
    der = pkcs7_der(pem)
    assert der.count(old) == 1, f"{old!r} must occur once in the message"
    return pkcs7_pem(der.replace(old, new))


@dataclass(frozen=True)
class SigningKit:
    """A CA bundle to configure on the host and a signer the service signs with."""

    root: Credential
    signer: Credential
    ca_bundle: Path

    def sign(self, content: str | bytes) -> str:
        return sign_content(content, self.signer)


def make_signing_kit(
    folder: Path,
    region: str = DEFAULT_REGION,
    signer_name: str | None = None,
    root_common_name: str = "CodeDeploy Test Root CA",
) -> SigningKit:
    """A root CA, a signer it issued (AWS's name for ``region`` unless given) and the bundle."""
    root = make_root_ca(folder, common_name=root_common_name)
    signer = make_signer(folder, root, signer_name or signer_name_for(region))
    bundle = write_ca_bundle(folder / "ca-bundle.pem", root)
    return SigningKit(root, signer, bundle)
