"""Reading the subject common names of a certificate from its DER."""

from __future__ import annotations

import datetime
from typing import List

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.deployment_specification.certificate import (
    CertificateFormatError,
    subject_common_names,
)


def _certificate(subject: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _name(*rdns: List[x509.NameAttribute]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in rdns])


def test_common_name_of_the_subject_not_the_issuer() -> None:
    pem = _certificate(
        _name(
            [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")],
            [x509.NameAttribute(NameOID.COMMON_NAME, "codedeploy-signer-us-east-1.amazonaws.com")],
        )
    )
    assert subject_common_names(pem) == ["codedeploy-signer-us-east-1.amazonaws.com"]


def test_multi_valued_names_unicode_and_no_common_name() -> None:
    both = _name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CN=fake"),
            x509.NameAttribute(NameOID.COMMON_NAME, "signér"),
        ]
    )
    assert subject_common_names(_certificate(both)) == ["signér"]
    none = _name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x\n    CN=sneaky")])
    assert subject_common_names(_certificate(none)) == []


@pytest.mark.parametrize(
    "pem",
    [
        b"not a certificate",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
    ],
)
def test_malformed_input_is_a_format_error(pem: bytes) -> None:
    with pytest.raises(CertificateFormatError):
        subject_common_names(pem)
