"""Verifying a ``PKCS7/JSON`` deployment specification with the ``openssl`` command.

The service signs the specification's JSON into a PEM PKCS#7 SignedData message with the
content attached. Before any of it is used we check, with ``openssl smime -verify``, that the
signature matches the content and that the signer's certificate chains to a CA of the
configured bundle, and then that the certificate's common name is the expected signer's.
The ``cryptography`` package can build such messages but cannot verify them, hence the CLI.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import List, Tuple

import structlog

from agent.deployment_specification.certificate import (
    CertificateFormatError,
    subject_common_names,
)
from agent.deployment_specification.model import DeploymentSpecError

logger = structlog.get_logger(__name__)

OPENSSL = "openssl"
OPENSSL_TIMEOUT_SECONDS = 60.0
PEM_CERTIFICATE_HEADER = b"-----BEGIN CERTIFICATE-----"

_CA_FILE_ADVICE = (
    "copy host-agent-deployment-signer-ca-chain.pem from an existing AWS CodeDeploy agent"
    " install (/opt/codedeploy-agent/certs/) or from AWS's agent package for the region,"
    " or point deployment_signer_ca_file at a PEM bundle of the CAs that sign"
    " deployment specifications"
)


class SpecSignatureError(DeploymentSpecError):
    """A deployment specification is unsigned, tampered with, or signed by someone else."""


def check_signer_ca_file(ca_file: Path) -> None:
    """Read ``ca_file`` and fail clearly when it is missing, unreadable or holds no certificate."""
    try:
        content = ca_file.read_bytes()
    except FileNotFoundError:
        raise SpecSignatureError(
            f"deployment signer CA file {ca_file} does not exist: {_CA_FILE_ADVICE}"
        ) from None
    except OSError as error:
        raise SpecSignatureError(
            f"deployment signer CA file {ca_file} cannot be read ({error.strerror or error}):"
            f" {_CA_FILE_ADVICE}"
        ) from None
    if PEM_CERTIFICATE_HEADER not in content:
        raise SpecSignatureError(
            f"deployment signer CA file {ca_file} holds no PEM certificate: {_CA_FILE_ADVICE}"
        )


def _run_openssl(arguments: List[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [OPENSSL, *arguments],
            input=stdin,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise SpecSignatureError(
            "the openssl command is needed to verify signed deployment specifications"
            " but it is not on PATH: install OpenSSL (the openssl package)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SpecSignatureError(
            f"openssl did not finish verifying the deployment specification within"
            f" {OPENSSL_TIMEOUT_SECONDS:.0f} seconds"
        ) from None


def _openssl_reasons(stderr: bytes) -> Tuple[str, List[str]]:
    """Split openssl's stderr into its first plain line and the reasons of its error lines.

    An error line reads ``<thread>:error:<code>:<library>:<function>:<reason>:<file>:<line>:
    <detail>``; the detail (``Verify error: ...``) is more telling than the reason when
    present. Thread ids, source files and line numbers are noise for an operator.
    """
    headline = ""
    reasons: List[str] = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        fields = line.split(":", 8)
        if len(fields) >= 6 and fields[1] == "error":
            detail = fields[8].strip() if len(fields) == 9 else ""
            reason = detail or fields[5].strip()
            if reason and reason not in reasons:
                reasons.append(reason)
        elif not headline:
            headline = line
    return headline, reasons


def _verification_failure(stderr: bytes, ca_file: Path) -> SpecSignatureError:
    headline, reasons = _openssl_reasons(stderr)
    verify_errors = [
        r[len("Verify error:") :].strip() for r in reasons if r.startswith("Verify error:")
    ]
    if verify_errors:
        return SpecSignatureError(
            "deployment specification refused: its signer certificate is not trusted by the"
            f" CAs in {ca_file} ({verify_errors[0]})"
        )
    if "digest failure" in reasons or "signature failure" in reasons:
        return SpecSignatureError(
            "deployment specification refused: its signature does not match its content"
            " (the specification was altered or corrupted)"
        )
    if headline.startswith("Error reading S/MIME message"):
        return SpecSignatureError(
            "deployment specification refused: the PKCS7/JSON payload is not a PEM PKCS#7"
            f" message (openssl says: {reasons[0] if reasons else 'unreadable'})"
        )
    if headline.startswith("Error loading file"):
        return SpecSignatureError(
            f"deployment signer CA file {ca_file} could not be loaded by openssl"
            f" (openssl says: {reasons[0] if reasons else 'no usable certificate'}): {_CA_FILE_ADVICE}"
        )
    summary = "; ".join([headline, *reasons] if headline else reasons) or "no reason given"
    return SpecSignatureError(
        f"deployment specification refused: openssl could not verify it ({summary})"
    )


def _signer_common_names(certificate: bytes) -> List[str]:
    """The common names in the subject of the (first) PEM certificate given."""
    try:
        return subject_common_names(certificate)
    except (CertificateFormatError, UnicodeDecodeError) as error:
        raise SpecSignatureError(
            f"deployment specification refused: the signer certificate could not be read ({error})"
        ) from None


def verify_pkcs7_payload_with_openssl(payload_pem: str, ca_file: Path, expected_signer: str) -> str:
    """Verify a PEM PKCS#7 signed message and return the JSON text it carries.

    Runs ``openssl smime -verify``, which writes the signer certificate to a temporary
    file; its subject is then read in-process. The signature must match the content; the signer certificate must
    chain to a CA of ``ca_file`` and to nothing else (no system CA store); the message must
    have exactly one signer, whose subject common name is ``expected_signer``.

    Certificates carried in the message may serve as intermediates, but the chain always
    ends at a CA of ``ca_file`` and each intermediate must be a CA. No certificate purpose
    is required of the signer, as with the AWS agent, whose certificates are not known to
    carry the S/MIME key usages.
    """
    check_signer_ca_file(ca_file)
    with tempfile.TemporaryDirectory(prefix="codedeploy-signer-") as folder:
        signer_file = Path(folder) / "signer.pem"
        completed = _run_openssl(
            [
                "smime",
                "-verify",
                "-binary",
                "-inform",
                "PEM",
                "-CAfile",
                str(ca_file),
                # Without these openssl also trusts the system's default CA folder and store
                # (and SSL_CERT_DIR): only the configured bundle may vouch for a signer.
                "-no-CApath",
                "-no-CAstore",
                "-purpose",
                "any",
                "-signer",
                str(signer_file),
            ],
            payload_pem.encode("utf-8"),
        )
        # openssl prints the content even when verification fails: only the status counts.
        if completed.returncode != 0:
            raise _verification_failure(completed.stderr, ca_file)
        try:
            signer_pem = signer_file.read_bytes()
        except OSError:
            signer_pem = b""

    signer_count = signer_pem.count(PEM_CERTIFICATE_HEADER)
    if signer_count != 1:
        raise SpecSignatureError(
            f"deployment specification refused: it must have exactly one signer, not {signer_count}"
        )
    names = _signer_common_names(signer_pem)
    if names != [expected_signer]:
        shown = ", ".join(repr(name) for name in names) or "no common name"
        raise SpecSignatureError(
            f"deployment specification refused: it is signed by {shown}, not by the expected"
            f" signer {expected_signer!r} (deployment_signer_name)"
        )
    try:
        content = completed.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecSignatureError(
            "deployment specification refused: its signed content is not UTF-8 text"
        ) from None
    logger.debug("deployment specification signature verified", signer=expected_signer)
    return content
