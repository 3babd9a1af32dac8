"""Remembered verifications: openssl runs once per payload, and nothing else gets through.

The real openssl verifies, behind a wrapper on PATH that counts its runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

from agent.deployment_specification.envelope import (
    SignatureSettings,
    open_deployment_specification,
)
from agent.deployment_specification.signature import SpecSignatureError
from agent.deployment_specification.verified_payloads import VerifiedPayloads
from tests.deployment_specification.test_envelope import SIGNER, spec_json
from tests.support.signing import (
    SigningKit,
    counting_openssl_wrapper,
    make_signer,
    make_signing_kit,
    replace_in_pkcs7,
    sign_content,
    write_ca_bundle,
)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> SigningKit:
    return make_signing_kit(tmp_path_factory.mktemp("kit"))


@pytest.fixture
def openssl_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that gets one line per openssl run (the real openssl, through a wrapper)."""
    bin_dir, runs = counting_openssl_wrapper(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return runs


def run_count(runs: Path) -> int:
    return len(runs.read_text(encoding="ascii").splitlines())


def test_the_same_payload_is_verified_by_openssl_once(kit: SigningKit, openssl_runs: Path) -> None:
    verified = VerifiedPayloads()
    settings = SignatureSettings(kit.ca_bundle, SIGNER)
    payload = kit.sign(spec_json())

    first = open_deployment_specification("PKCS7/JSON", payload, settings, verified)
    again = [open_deployment_specification("PKCS7/JSON", payload, settings, verified) for _ in "ab"]

    assert run_count(openssl_runs) == 1
    assert all(spec == first for spec in again)


def test_a_payload_differing_by_one_byte_is_verified_and_refused(
    kit: SigningKit, openssl_runs: Path
) -> None:
    verified = VerifiedPayloads()
    settings = SignatureSettings(kit.ca_bundle, SIGNER)
    payload = kit.sign(spec_json(ApplicationName="app"))
    open_deployment_specification("PKCS7/JSON", payload, settings, verified)
    tampered = replace_in_pkcs7(payload, b'"app"', b'"evl"')

    with pytest.raises(SpecSignatureError, match="does not match its content"):
        open_deployment_specification("PKCS7/JSON", tampered, settings, verified)
    # A failure is not remembered: the next try runs openssl again, and fails again.
    with pytest.raises(SpecSignatureError, match="does not match its content"):
        open_deployment_specification("PKCS7/JSON", tampered, settings, verified)

    assert run_count(openssl_runs) == 3
    assert len(verified) == 1


def test_another_trust_or_signer_name_is_checked_anew(
    kit: SigningKit, openssl_runs: Path, tmp_path: Path
) -> None:
    verified = VerifiedPayloads()
    payload = kit.sign(spec_json())
    verified.verify(payload, kit.ca_bundle, SIGNER)

    with pytest.raises(SpecSignatureError, match="not by the expected signer"):
        verified.verify(payload, kit.ca_bundle, "someone-else.example.com")
    other = make_signing_kit(tmp_path / "other")
    with pytest.raises(SpecSignatureError, match="not trusted by the CAs"):
        verified.verify(payload, other.ca_bundle, SIGNER)
    # Integrity only is another trust too: verified (and accepted) on its own.
    assert verified.verify(payload, None, None).text == spec_json()

    assert run_count(openssl_runs) == 4


def test_an_edited_ca_bundle_is_checked_anew(
    kit: SigningKit, openssl_runs: Path, tmp_path: Path
) -> None:
    bundle = write_ca_bundle(tmp_path / "bundle.pem", kit.root)
    verified = VerifiedPayloads()
    payload = kit.sign(spec_json())
    verified.verify(payload, bundle, SIGNER)

    # The operator replaces the CA: the same path now trusts someone else.
    other = make_signing_kit(tmp_path / "other")
    write_ca_bundle(bundle, other.root)
    with pytest.raises(SpecSignatureError, match="not trusted by the CAs"):
        verified.verify(payload, bundle, SIGNER)

    assert run_count(openssl_runs) == 2


def test_entries_expire_with_age_and_with_the_signer_certificate(
    kit: SigningKit, openssl_runs: Path
) -> None:
    now: List[float] = [0.0]
    utc: List[str] = ["2000-01-01T00:00:00Z"]
    verified = VerifiedPayloads(max_age_seconds=60.0, clock=lambda: now[0], utc_now=lambda: utc[0])
    payload = kit.sign(spec_json())
    signed = verified.verify(payload, kit.ca_bundle, SIGNER)
    now[0] = 59.0
    verified.verify(payload, kit.ca_bundle, SIGNER)
    assert run_count(openssl_runs) == 1

    now[0] = 61.0
    verified.verify(payload, kit.ca_bundle, SIGNER)
    assert run_count(openssl_runs) == 2

    utc[0] = signed.signer.not_after
    verified.verify(payload, kit.ca_bundle, SIGNER)
    assert run_count(openssl_runs) == 3


def test_the_memory_is_bounded(kit: SigningKit) -> None:
    verified = VerifiedPayloads(capacity=2)
    payloads = [kit.sign(spec_json(ApplicationName=f"app-{n}")) for n in range(3)]
    for payload in payloads:
        verified.verify(payload, kit.ca_bundle, SIGNER)
    assert len(verified) == 2


def test_a_signer_from_another_ca_in_a_cached_bundle_is_still_refused(
    kit: SigningKit, tmp_path: Path
) -> None:
    verified = VerifiedPayloads()
    verified.verify(kit.sign(spec_json()), kit.ca_bundle, SIGNER)
    other = make_signing_kit(tmp_path / "other")
    stranger = make_signer(tmp_path / "stranger", other.root, SIGNER)
    with pytest.raises(SpecSignatureError, match="not trusted by the CAs"):
        verified.verify(sign_content(spec_json(), stranger), kit.ca_bundle, SIGNER)
