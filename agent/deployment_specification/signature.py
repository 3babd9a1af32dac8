"""Verifying a ``PKCS7/JSON`` deployment specification with the ``openssl`` command.

The service signs the specification's JSON into a PEM PKCS#7 SignedData message with the
content attached. Before any of it is used we check, with ``openssl smime -verify``, that the
signature matches the content, made by the one certificate the message carries. What else
is checked depends on the trust the operator configured (:class:`SignerTrust`):

- none (the default): integrity only. No public fact says which CA signs AWS's
  specifications today (the chain the AWS agents ship expired years ago, and neither AWS
  agent checks the signer), so the signer's certificate is returned to be logged, for an
  operator to pin;
- a PEM bundle, or ``system`` (openssl's default CA paths): the signer's certificate must
  chain to one of those CAs, and its common name must be the expected signer's when one is
  configured.

The ``cryptography`` package can build such messages but cannot verify them, hence the CLI.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Mapping, Optional, Tuple, Union

from agent.deployment_specification.certificate import (
    CertificateFormatError,
    CertificateSummary,
    summarize_certificate,
)
from agent.deployment_specification.model import DeploymentSpecError

OPENSSL = "openssl"
OPENSSL_TIMEOUT_SECONDS = 60.0
PEM_CERTIFICATE_HEADER = b"-----BEGIN CERTIFICATE-----"

SYSTEM_CA_STORE = "system"
# openssl loads its default CA file (the host's bundle: 150 certificates, 35 ms here) before
# it looks at -noverify. Checking integrity only, with the program's environment at hand, the
# variables that name the defaults point where nothing can be (below a file), which every
# OpenSSL version ignores quietly: there is no -no-CAfile before 1.1.0.
_NOWHERE = "/dev/null/none"
_NO_DEFAULT_CAS = {"SSL_CERT_FILE": _NOWHERE, "SSL_CERT_DIR": _NOWHERE}
# OpenSSL 3.0's CA stores, and the option that leaves them out: older versions, which have
# none, refuse the option ("Unrecognized flag").
_NO_CA_STORE = "-no-CAstore"
_CA_FILE_ADVICE = (
    "point deployment_signer_ca_file at a readable PEM bundle of the CAs that sign your"
    " deployment specifications, set it to system for the host's CA store, or remove it"
    " to check the signature's integrity only"
)

# Where the signer's certificate must chain to: a PEM bundle, the host's CA store, or
# nowhere (integrity only).
SignerTrust = Union[Path, Literal["system"], None]


class SpecSignatureError(DeploymentSpecError):
    """A deployment specification is unsigned, tampered with, or signed by someone else."""


@dataclass(frozen=True)
class SignedContent:
    """The verified JSON text of a specification, and who signed it."""

    text: str
    signer: CertificateSummary


def describe_signer_trust(trust: SignerTrust, expected_signer: Optional[str]) -> str:
    """The verification policy in one phrase, for the start-up log and ``status``."""
    if trust is None:
        return "integrity only, signer logged"
    where = "the system CA store" if trust == SYSTEM_CA_STORE else str(trust)
    name = f"name {expected_signer}" if expected_signer else "any signer name"
    return f"chain checked against {where}, {name}"


def check_signer_trust_on_disk(trust: SignerTrust) -> None:
    """Fail clearly, before any command, when the configured trust cannot be used: a CA
    file missing, unreadable or without a certificate, or no ``openssl`` command."""
    if isinstance(trust, Path):
        check_signer_ca_file(trust)
    _run_openssl(["version"], b"")


def describe_signer_ca_file_on_disk(trust: SignerTrust) -> str:
    """Which CA file is configured and whether it can be read now, in a few words."""
    if trust is None:
        return "none configured"
    if not isinstance(trust, Path):
        return "the system CA store"
    try:
        check_signer_ca_file(trust)
    except SpecSignatureError:
        return f"{trust} (not readable)"
    return f"{trust} (readable)"


def check_signer_ca_file(ca_file: Path) -> None:
    """Read ``ca_file`` and fail clearly when it is missing, unreadable or holds no certificate."""
    read_signer_ca_file(ca_file)


def read_signer_ca_file(ca_file: Path) -> bytes:
    """The bytes of ``ca_file``; fails clearly when it is missing, unreadable or holds no
    certificate."""
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
    return content


def _run_openssl(
    arguments: List[str], stdin: bytes, environment: Optional[Mapping[str, str]] = None
) -> subprocess.CompletedProcess[bytes]:
    """Run openssl with ``environment`` (this process's own when None)."""
    try:
        return subprocess.run(
            [OPENSSL, *arguments],
            input=stdin,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_SECONDS,
            check=False,
            env=None if environment is None else dict(environment),
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


def _verification_failure(stderr: bytes, trust: SignerTrust) -> SpecSignatureError:
    headline, reasons = _openssl_reasons(stderr)
    ca_file = "the system CA store" if trust == SYSTEM_CA_STORE else str(trust)
    verify_errors = [
        r[len("Verify error:") :].strip() for r in reasons if r.startswith("Verify error:")
    ]
    if verify_errors:
        return SpecSignatureError(
            "deployment specification refused: its signer certificate is not trusted by the"
            f" CAs in {ca_file} ({verify_errors[0]})"
        )
    if "signer certificate not found" in reasons or "no signers" in reasons:
        return SpecSignatureError(
            "deployment specification refused: it carries no signer certificate"
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


def _signer_summary(certificate: bytes) -> CertificateSummary:
    """What the (first) PEM certificate given says about the signer."""
    try:
        return summarize_certificate(certificate)
    except (CertificateFormatError, UnicodeDecodeError) as error:
        raise SpecSignatureError(
            f"deployment specification refused: the signer certificate could not be read ({error})"
        ) from None


def _trust_arguments(trust: SignerTrust, ca_copy: Path) -> List[str]:
    """openssl's options for ``trust``; a CA bundle is read from ``ca_copy``, the copy of
    its bytes that the caller read (and judged) once."""
    if trust is None:
        # Integrity only: the signature must match the content and be made by the
        # certificate the message carries; who issued that certificate is not judged.
        return ["-noverify"]
    if trust == SYSTEM_CA_STORE:
        # openssl's default CA file, folder and store (SSL_CERT_FILE / SSL_CERT_DIR).
        return ["-purpose", "any"]
    return [
        "-CAfile",
        str(ca_copy),
        # Without these openssl also trusts the system's default CA folder and store
        # (and SSL_CERT_DIR): only the configured bundle may vouch for a signer.
        "-no-CApath",
        _NO_CA_STORE,
        "-purpose",
        "any",
    ]


def _refused_option(stderr: bytes, option: str) -> bool:
    """Whether openssl stopped at ``option`` because it does not know it."""
    return option[1:].encode() in stderr and (
        b"nrecognized" in stderr or b"nknown option" in stderr
    )


def verify_pkcs7_payload_with_openssl(
    payload_pem: str,
    trust: SignerTrust,
    expected_signer: Optional[str],
    environment: Optional[Mapping[str, str]] = None,
) -> SignedContent:
    """Verify a PEM PKCS#7 signed message; return the JSON text it carries and its signer.

    Runs ``openssl smime -verify``, which writes the signer certificate to a temporary
    file; it is then read in-process. The signature must match the content and the
    message must have exactly one signer. With a ``trust`` the signer certificate must
    chain to a CA of that bundle (and to nothing else, no system CA store) or, for
    ``system``, of openssl's default CA paths; then its subject common name must be
    ``expected_signer`` when one is given. Without a trust nothing more is checked: the
    caller logs the signer.

    Certificates carried in the message may serve as intermediates, but the chain always
    ends at a trusted CA and each intermediate must be a CA. No certificate purpose is
    required of the signer, as with the AWS agent, whose certificates are not known to
    carry the S/MIME key usages.

    openssl runs with ``environment``, the program's (where ``system`` finds the host's CA
    store), or this process's own when None.
    """
    ca_pem = read_signer_ca_file(trust) if isinstance(trust, Path) else None
    return verify_pkcs7_payload_against_ca_bytes(
        payload_pem, trust, ca_pem, expected_signer, environment
    )


def verify_pkcs7_payload_against_ca_bytes(
    payload_pem: str,
    trust: SignerTrust,
    ca_pem: Optional[bytes],
    expected_signer: Optional[str],
    environment: Optional[Mapping[str, str]] = None,
) -> SignedContent:
    """:func:`verify_pkcs7_payload_with_openssl` with the CA bundle's bytes already read
    (``ca_pem``, given exactly when ``trust`` is a file): openssl checks against these
    very bytes, so a caller that remembers the outcome knows what it was checked against."""
    content_bytes, signer_pem = _run_smime_verify(payload_pem, trust, ca_pem, environment)
    signer = _single_expected_signer(signer_pem, trust, expected_signer)
    try:
        content = content_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecSignatureError(
            "deployment specification refused: its signed content is not UTF-8 text"
        ) from None
    return SignedContent(content, signer)


def _run_smime_verify(
    payload_pem: str,
    trust: SignerTrust,
    ca_pem: Optional[bytes],
    environment: Optional[Mapping[str, str]],
) -> Tuple[bytes, bytes]:
    """Run ``openssl smime -verify`` on the payload; the content it carries and the PEM
    signer certificate(s) openssl wrote out (empty when it wrote none)."""
    if trust is None and environment is not None:
        environment = {**environment, **_NO_DEFAULT_CAS}
    with tempfile.TemporaryDirectory(prefix="codedeploy-signer-") as folder:
        signer_file = Path(folder) / "signer.pem"
        ca_copy = Path(folder) / "ca.pem"
        if ca_pem is not None:
            ca_copy.write_bytes(ca_pem)
        arguments = [
            "smime",
            "-verify",
            "-binary",
            "-inform",
            "PEM",
            *_trust_arguments(trust, ca_copy),
            "-signer",
            str(signer_file),
        ]
        message = payload_pem.encode("utf-8")
        completed = _run_openssl(arguments, message, environment)
        if completed.returncode != 0 and _refused_option(completed.stderr, _NO_CA_STORE):
            # Before 3.0 there is no CA store to leave out: the same check without it.
            arguments.remove(_NO_CA_STORE)
            completed = _run_openssl(arguments, message, environment)
        # openssl prints the content even when verification fails: only the status counts.
        if completed.returncode != 0:
            raise _verification_failure(completed.stderr, trust)
        try:
            return completed.stdout, signer_file.read_bytes()
        except OSError:
            return completed.stdout, b""


def _single_expected_signer(
    signer_pem: bytes, trust: SignerTrust, expected_signer: Optional[str]
) -> CertificateSummary:
    """The one signer openssl reported; under a trust, named ``expected_signer`` if given."""
    signer_count = signer_pem.count(PEM_CERTIFICATE_HEADER)
    if signer_count != 1:
        raise SpecSignatureError(
            f"deployment specification refused: it must have exactly one signer, not {signer_count}"
        )
    signer = _signer_summary(signer_pem)
    names = list(signer.common_names)
    if trust is not None and expected_signer is not None and names != [expected_signer]:
        shown = ", ".join(repr(name) for name in names) or "no common name"
        raise SpecSignatureError(
            f"deployment specification refused: it is signed by {shown}, not by the expected"
            f" signer {expected_signer!r} (deployment_signer_name)"
        )
    return signer
