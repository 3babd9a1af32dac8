"""What the agent tells about a signer certificate, read straight from its DER.

Only the signer certificate of a specification that openssl has already verified is read
here, so this needs no general ASN.1 library: it walks the certificate's outer structure
to the issuer, the validity and the subject. The common names (OID 2.5.4.3) of every
relative distinguished name, multi-valued ones included, are what the signer-name check
compares; the subject, issuer, validity and SHA-256 fingerprint are what the daemon logs
with each deployment so that an operator can pin the signer. Reading it in-process spares
a second openssl run on every command.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Tuple

# The complete encoding of the commonName attribute type, OID 2.5.4.3.
_COMMON_NAME_OID = bytes([0x06, 0x03, 0x55, 0x04, 0x03])
_SEQUENCE, _SET, _VERSION = 0x30, 0x31, 0xA0
_OID, _UTC_TIME, _GENERALIZED_TIME = 0x06, 0x17, 0x18
# Short names of the usual distinguished-name attributes, as openssl prints them; any
# other attribute is shown by its dotted OID.
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.17": "postalCode",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
_STRING_ENCODINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString, as decoders commonly treat it
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


class CertificateFormatError(ValueError):
    """The certificate is not the DER this reader understands."""


class _Element(NamedTuple):
    tag: int
    start: int  # where the element's tag is
    value: int  # where its content starts
    end: int  # where it ends


@dataclass(frozen=True)
class CertificateSummary:
    """Who a certificate names and who vouches for it, for the log and for pinning."""

    subject: str
    issuer: str
    not_before: str  # ISO 8601, UTC
    not_after: str
    sha256_fingerprint: str  # as ``openssl x509 -fingerprint -sha256`` prints it
    common_names: Tuple[str, ...]


def subject_common_names(pem: bytes) -> List[str]:
    """The common names in the subject of the first certificate of ``pem``, in order."""
    return list(summarize_certificate(pem).common_names)


def summarize_certificate(pem: bytes) -> CertificateSummary:
    """Subject, issuer, validity, fingerprint and common names of the first certificate."""
    der = _first_certificate_der(pem)
    certificate = _element_at(der, 0, len(der))
    tbs = _first_child(der, certificate, _SEQUENCE)
    fields = list(_children(der, tbs))
    if fields and fields[0].tag == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[4].tag != _SEQUENCE:
        raise CertificateFormatError("the certificate has no subject")
    if fields[2].tag != _SEQUENCE or fields[3].tag != _SEQUENCE:
        raise CertificateFormatError("the certificate has no issuer or validity")
    subject = _name_attributes(der, fields[4])
    times = [_time_text(der, t) for t in _children(der, fields[3])]
    if len(times) != 2:
        raise CertificateFormatError("the certificate's validity is malformed")
    digest = hashlib.sha256(der[certificate.start : certificate.end]).hexdigest().upper()
    return CertificateSummary(
        subject=_name_text(subject),
        issuer=_name_text(_name_attributes(der, fields[2])),
        not_before=times[0],
        not_after=times[1],
        sha256_fingerprint=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        common_names=tuple(value for kind, value in subject if kind == "CN"),
    )


def _name_attributes(der: bytes, name: _Element) -> List[Tuple[str, str]]:
    """(short name, value) of every attribute of a distinguished name, in order."""
    attributes: List[Tuple[str, str]] = []
    for rdn in _children(der, name):
        if rdn.tag != _SET:
            raise CertificateFormatError("the subject is not a list of name sets")
        for attribute in _children(der, rdn):
            parts = list(_children(der, attribute))
            if attribute.tag != _SEQUENCE or len(parts) != 2 or parts[0].tag != _OID:
                raise CertificateFormatError("a subject attribute is malformed")
            kind, value = parts
            oid = _oid_text(der[kind.value : kind.end])
            short = _ATTRIBUTE_NAMES.get(oid, oid)
            encoding = _STRING_ENCODINGS.get(value.tag)
            if encoding is None:
                if der[kind.start : kind.end] == _COMMON_NAME_OID:
                    raise CertificateFormatError("a common name is not a string")
                text = "#" + der[value.start : value.end].hex()
            else:
                text = der[value.value : value.end].decode(encoding)
            attributes.append((short, text))
    return attributes


def _name_text(attributes: List[Tuple[str, str]]) -> str:
    return ", ".join(f"{kind}={value}" for kind, value in attributes)


def _oid_text(encoded: bytes) -> str:
    numbers: List[int] = []
    current = 0
    for byte in encoded:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(current)
            current = 0
    if not numbers:
        raise CertificateFormatError("an attribute type is empty")
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first, *numbers[1:]])


def _time_text(der: bytes, element: _Element) -> str:
    """A UTCTime or GeneralizedTime as ``YYYY-MM-DDTHH:MM:SSZ``."""
    raw = der[element.value : element.end].decode("ascii", "replace")
    if element.tag == _UTC_TIME and len(raw) == 13 and raw.endswith("Z"):
        year = int(raw[:2])
        raw = f"{1900 + year if year >= 50 else 2000 + year}{raw[2:]}"
    elif element.tag != _GENERALIZED_TIME or len(raw) != 15 or not raw.endswith("Z"):
        raise CertificateFormatError("the certificate's validity is malformed")
    if not raw[:14].isdigit():
        raise CertificateFormatError("the certificate's validity is malformed")
    return f"{raw[0:4]}-{raw[4:6]}-{raw[6:8]}T{raw[8:10]}:{raw[10:12]}:{raw[12:14]}Z"


def _first_certificate_der(pem: bytes) -> bytes:
    lines = pem.decode("ascii", "replace").splitlines()
    try:
        start = lines.index("-----BEGIN CERTIFICATE-----")
        end = lines.index("-----END CERTIFICATE-----", start)
        return base64.b64decode("".join(lines[start + 1 : end]), validate=True)
    except (ValueError, binascii.Error):
        raise CertificateFormatError("no PEM certificate found") from None


def _element_at(der: bytes, offset: int, limit: int) -> _Element:
    if offset + 2 > limit:
        raise CertificateFormatError("the certificate is truncated")
    tag, length = der[offset], der[offset + 1]
    value = offset + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or value + size > limit:
            raise CertificateFormatError("the certificate has an invalid length")
        length = int.from_bytes(der[value : value + size], "big")
        value += size
    end = value + length
    if end > limit:
        raise CertificateFormatError("the certificate is truncated")
    return _Element(tag, offset, value, end)


def _children(der: bytes, parent: _Element) -> Iterator[_Element]:
    offset = parent.value
    while offset < parent.end:
        child = _element_at(der, offset, parent.end)
        yield child
        offset = child.end


def _first_child(der: bytes, parent: _Element, tag: int) -> _Element:
    for child in _children(der, parent):
        if child.tag != tag:
            break
        return child
    raise CertificateFormatError("the certificate is not an X.509 certificate")
