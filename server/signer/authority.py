"""The signer's files in the data folder, made at first start and never overwritten.

``<data_dir>/signer/``: ``ca.pem`` (a self-signed CA certificate, what agents trust via
``deployment_signer_ca_file``), ``signer.pem`` (the signing certificate that CA issued,
common name = ``signer_name``, what agents expect in ``deployment_signer_name``) and
``signer.key`` (its private key, mode 0600). The CA's own private key signs the signer's
certificate once and is never written anywhere: nobody, not even someone with the data
folder, can issue a second signer the agents would trust. Replacing the signer therefore
means a new CA, pushed to the agents: delete the folder, restart, and redistribute
``ca.pem``.

The three files are written in a fresh folder beside it and renamed into place in one
step, so a crash never leaves half a signer; a folder with some files missing is an
error to look at, not something to regenerate behind the agents' backs.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.deployment_specification.certificate import subject_common_names
from server.errors import ServerError

SIGNER_FOLDER = "signer"
CA_FILE = "ca.pem"
SIGNER_CERTIFICATE_FILE = "signer.pem"
SIGNER_KEY_FILE = "signer.key"
CA_VALIDITY_DAYS = 20 * 365
SIGNER_VALIDITY_DAYS = 10 * 365


class SignerError(ServerError):
    """The signer's files cannot be made or read."""


@dataclass(frozen=True)
class SignerFiles:
    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / CA_FILE

    @property
    def certificate_file(self) -> Path:
        return self.folder / SIGNER_CERTIFICATE_FILE

    @property
    def key_file(self) -> Path:
        return self.folder / SIGNER_KEY_FILE


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "codedeploy-server"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True)
        .add_extension(
            x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _new_signer_pem(signer_name: str) -> Tuple[bytes, bytes, bytes]:
    """(CA certificate, signer certificate, signer key) as PEM."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{signer_name} CA")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, CA_VALIDITY_DAYS, True)
    key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate(
        _name(signer_name), ca_name, key.public_key(), ca_key, SIGNER_VALIDITY_DAYS, False
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), signer.public_bytes(pem), key_pem


def _write_new_signer_on_disk(files: SignerFiles, signer_name: str) -> None:
    ca_pem, certificate_pem, key_pem = _new_signer_pem(signer_name)
    files.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".signer-", dir=files.folder.parent))
    try:
        for name, content, mode in (
            (CA_FILE, ca_pem, 0o644),
            (SIGNER_CERTIFICATE_FILE, certificate_pem, 0o644),
            (SIGNER_KEY_FILE, key_pem, 0o600),
        ):
            descriptor = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(content)
                os.fsync(stream.fileno())
        staging.chmod(0o755)
        try:
            # Fails when another process made the folder first: theirs is kept.
            staging.rename(files.folder)
        except OSError:
            if not files.folder.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_signer_on_disk(data_dir: Path, signer_name: str) -> SignerFiles:
    """The signer's files, made first when the folder does not exist."""
    files = SignerFiles(data_dir / SIGNER_FOLDER)
    try:
        if not files.folder.exists():
            _write_new_signer_on_disk(files, signer_name)
        missing = [
            path.name
            for path in (files.ca_file, files.certificate_file, files.key_file)
            if not path.is_file()
        ]
    except OSError as error:
        raise SignerError(
            f"signer folder {files.folder} cannot be made or read: {error.strerror or error}"
        ) from None
    if missing:
        raise SignerError(
            f"signer folder {files.folder} lacks {', '.join(missing)}; it is never remade over"
            " an existing one: restore the files, or remove the folder to make a new signer"
            " (and give agents the new CA)"
        )
    return files


def signer_common_name_on_disk(files: SignerFiles) -> str:
    """The common name in the signer's certificate (what agents must expect)."""
    try:
        names = subject_common_names(files.certificate_file.read_bytes())
    except (OSError, ValueError) as error:
        raise SignerError(
            f"signer certificate {files.certificate_file} cannot be read: {error}"
        ) from None
    if len(names) != 1:
        raise SignerError(f"signer certificate {files.certificate_file} has no single common name")
    return names[0]
