"""The subject common names of an X.509 certificate, read straight from its DER.

Only the signer certificate of a specification that openssl has already verified is read
here, so this needs no general ASN.1 library: it walks the certificate's outer structure
to the subject and picks the values of the commonName attributes (OID 2.5.4.3) of every
relative distinguished name, multi-valued ones included. Reading it in-process spares a
second openssl run on every command.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterator, List, NamedTuple

# The complete encoding of the commonName attribute type, OID 2.5.4.3.
_COMMON_NAME_OID = bytes([0x06, 0x03, 0x55, 0x04, 0x03])
_SEQUENCE, _SET, _VERSION = 0x30, 0x31, 0xA0
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


def subject_common_names(pem: bytes) -> List[str]:
    """The common names in the subject of the first certificate of ``pem``, in order."""
    der = _first_certificate_der(pem)
    certificate = _element_at(der, 0, len(der))
    tbs = _first_child(der, certificate, _SEQUENCE)
    fields = list(_children(der, tbs))
    if fields and fields[0].tag == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[4].tag != _SEQUENCE:
        raise CertificateFormatError("the certificate has no subject")
    names: List[str] = []
    for rdn in _children(der, fields[4]):
        if rdn.tag != _SET:
            raise CertificateFormatError("the subject is not a list of name sets")
        for attribute in _children(der, rdn):
            parts = list(_children(der, attribute))
            if attribute.tag != _SEQUENCE or len(parts) != 2:
                raise CertificateFormatError("a subject attribute is malformed")
            kind, value = parts
            if der[kind.start : kind.end] == _COMMON_NAME_OID:
                encoding = _STRING_ENCODINGS.get(value.tag)
                if encoding is None:
                    raise CertificateFormatError("a common name is not a string")
                names.append(der[value.value : value.end].decode(encoding))
    return names


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
