"""A throw-away CA, signer certificates, and signed deployment specifications.

Builds, with the ``cryptography`` package, what the command service and the host share: a
CA bundle the agent trusts (``deployment_signer_ca_file``) and a signer whose certificate
that CA issued, and signs JSON into a PEM PKCS#7 message with the content attached, the
shape of a ``PKCS7/JSON`` envelope's payload. Keys are P-256 so that building a kit is fast.
Extensions are given in openssl's config syntax (``keyUsage=critical,digitalSignature``) so
that tests read like the certificates they describe. Used by the envelope tests, end-to-end
tests, and the self-hosted service's tests.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_REGION = "us-east-1"
PEM_PKCS7_HEADER = "-----BEGIN PKCS7-----"
PEM_PKCS7_FOOTER = "-----END PKCS7-----"

_SigningKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

_KEY_USAGE_FLAGS = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)

_EXTENDED_KEY_USAGES: Dict[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


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


def _subject(common_name: str, organization: str) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(flags: Sequence[str]) -> x509.KeyUsage:
    unknown = [flag for flag in flags if flag not in _KEY_USAGE_FLAGS]
    if unknown:
        raise ValueError(f"unknown keyUsage flag(s) {unknown}; known: {list(_KEY_USAGE_FLAGS)}")
    return x509.KeyUsage(
        digital_signature="digitalSignature" in flags,
        content_commitment="nonRepudiation" in flags,
        key_encipherment="keyEncipherment" in flags,
        data_encipherment="dataEncipherment" in flags,
        key_agreement="keyAgreement" in flags,
        key_cert_sign="keyCertSign" in flags,
        crl_sign="cRLSign" in flags,
        encipher_only="encipherOnly" in flags,
        decipher_only="decipherOnly" in flags,
    )


def _basic_constraints(values: Sequence[str]) -> x509.BasicConstraints:
    ca = False
    path_length: Optional[int] = None
    for value in values:
        name, _, setting = value.partition(":")
        if name == "CA" and setting.upper() in ("TRUE", "FALSE"):
            ca = setting.upper() == "TRUE"
        elif name == "pathlen" and setting.isdigit():
            path_length = int(setting)
        else:
            raise ValueError(f"unsupported basicConstraints value {value!r}")
    return x509.BasicConstraints(ca=ca, path_length=path_length)


def _extended_key_usage(names: Sequence[str]) -> x509.ExtendedKeyUsage:
    unknown = [name for name in names if name not in _EXTENDED_KEY_USAGES]
    if unknown:
        raise ValueError(
            f"unknown extendedKeyUsage value(s) {unknown}; known: {list(_EXTENDED_KEY_USAGES)}"
        )
    return x509.ExtendedKeyUsage([_EXTENDED_KEY_USAGES[name] for name in names])


def _parse_extension(text: str) -> Tuple[x509.ExtensionType, bool]:
    """An extension and its criticality from openssl's ``name=[critical,]value,...`` form.

    Only the extensions these tests need are understood; anything else is a test bug.
    """
    name, separator, rest = text.partition("=")
    if not separator:
        raise ValueError(f"extension {text!r} is not of the form name=value")
    values = [value.strip() for value in rest.split(",") if value.strip()]
    critical = bool(values) and values[0] == "critical"
    if critical:
        values = values[1:]
    name = name.strip()
    if name == "basicConstraints":
        return _basic_constraints(values), critical
    if name == "keyUsage":
        return _key_usage(values), critical
    if name == "extendedKeyUsage":
        return _extended_key_usage(values), critical
    raise ValueError(
        f"unsupported extension {name!r}: use basicConstraints, keyUsage or extendedKeyUsage"
    )


def _read_signing_key(path: Path) -> _SigningKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TypeError(f"{path} holds a {type(key).__name__}, not an EC or RSA key")
    return key


def _read_certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # A private key, even a throw-away one, is written readable by its owner only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(pem)


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
    certificate_path = folder / f"{name}.pem"
    key_path = folder / f"{name}.key"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _subject(common_name, organization)
    issuer_name: x509.Name = subject
    signing_key: _SigningKey = key
    if issuer is not None:
        issuer_name = _read_certificate(issuer.certificate).subject
        signing_key = _read_signing_key(issuer.key)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        # The identifiers openssl adds by default, so chains are built the same way.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), False
        )
    )
    for text in extensions:
        extension, critical = _parse_extension(text)
        builder = builder.add_extension(extension, critical)
    certificate = builder.sign(signing_key, hashes.SHA256())
    _write_private_key(key_path, key)
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Credential(certificate_path, key_path, common_name)


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
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(
            _read_certificate(signer.certificate), _read_signing_key(signer.key), hashes.SHA256()
        )
    )
    for extra in extra_certificates:
        builder = builder.add_certificate(_read_certificate(extra.certificate))
    # Binary: the bytes are signed as given, without conversion to canonical MIME (CRLF).
    signed = builder.sign(serialization.Encoding.PEM, [pkcs7.PKCS7Options.Binary])
    return signed.decode("ascii")


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


def openssl_x509_fields(certificate: Path, *options: str) -> str:
    """What ``openssl x509 -noout <options>`` prints about ``certificate``: the reference
    the agent's own reading of a signer certificate is compared with."""
    return subprocess.run(
        ["openssl", "x509", "-noout", *options, "-in", str(certificate)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def counting_openssl_wrapper(folder: Path) -> Tuple[Path, Path]:
    """A folder to put first on PATH whose ``openssl`` runs the real one after appending
    its first argument (``smime``, ``version`` ...) to a log; returns (folder, log)."""
    real = shutil.which("openssl")
    assert real is not None, "the tests need the openssl command"
    runs = folder / "openssl-runs"
    runs.write_text("", encoding="ascii")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "openssl"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> "{runs}"\nexec "{real}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return bin_dir, runs


def localhost_tls_certificate(folder: Path) -> Tuple[Path, Path]:
    """A self-signed TLS certificate for 127.0.0.1 and its key (``<folder>/tls.pem|.key``):
    a server on loopback serves it, a client trusts it as its CA bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = folder / "tls.pem", folder / "tls.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_file, key_file
