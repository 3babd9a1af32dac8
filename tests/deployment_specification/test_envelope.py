"""Opening deployment specification envelopes: signed specs are verified before use.

Real certificates and signatures made by the openssl command, real openssl verification.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest
from structlog.testing import capture_logs

from agent.configuration.model import AgentConfig
from agent.deployment_specification.envelope import (
    SignatureSettings,
    expected_signer_name,
    open_deployment_specification,
)
from agent.deployment_specification.model import DeploymentSpecError, S3Revision
from agent.deployment_specification.signature import (
    SpecSignatureError,
    verify_pkcs7_payload_with_openssl,
)
from tests.support.signing import (
    SigningKit,
    make_intermediate_ca,
    make_root_ca,
    make_signer,
    make_signing_kit,
    openssl_x509_fields,
    pkcs7_der,
    pkcs7_pem,
    replace_in_pkcs7,
    sign_content,
    signer_name_for,
    write_ca_bundle,
)

SIGNER = "codedeploy-signer-us-east-1.amazonaws.com"
TOKEN = "ghp_secret_token_value"


def spec_document(**overrides: Any) -> Dict[str, Any]:
    document: Dict[str, Any] = {
        "DeploymentId": "arn:aws:codedeploy:us-east-1:123456789012:deployment/d-ABCDEFGHI",
        "DeploymentGroupId": "group-id-1",
        "DeploymentGroupName": "group-a",
        "ApplicationName": "app",
        "Revision": {
            "RevisionType": "S3",
            "S3Revision": {"Bucket": "bucket", "Key": "bundle.zip", "BundleType": "zip"},
        },
    }
    document.update(overrides)
    return document


def spec_json(**overrides: Any) -> str:
    return json.dumps(spec_document(**overrides))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> SigningKit:
    return make_signing_kit(tmp_path_factory.mktemp("kit"))


def settings_for(kit: SigningKit, *, allow_unsigned: bool = False) -> SignatureSettings:
    return SignatureSettings(kit.ca_bundle, SIGNER, allow_unsigned)


def test_signed_spec_opens_into_the_specification(kit: SigningKit) -> None:
    payload = kit.sign(spec_json())
    assert payload.startswith("-----BEGIN PKCS7-----")

    spec = open_deployment_specification("PKCS7/JSON", payload, settings_for(kit))

    assert spec.deployment_id == "d-ABCDEFGHI"
    assert spec.deployment_group_name == "group-a"
    assert spec.revision == S3Revision("bucket", "bundle.zip", spec.bundle_type)
    assert spec.bundle_type.value == "zip"


def test_verified_content_is_returned_byte_for_byte(kit: SigningKit) -> None:
    content = spec_json(ApplicationName="app with ünïcode\r\nand CRLF")
    signed = verify_pkcs7_payload_with_openssl(kit.sign(content), kit.ca_bundle, SIGNER)
    assert signed.text == content


def test_tampered_content_is_refused(kit: SigningKit) -> None:
    payload = replace_in_pkcs7(kit.sign(spec_json()), b'"group-a"', b'"group-b"')

    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification("PKCS7/JSON", payload, settings_for(kit))

    assert "does not match its content" in caught.value.message
    assert "\n" not in caught.value.message


def test_tampered_signature_is_refused_without_leaking_the_content(kit: SigningKit) -> None:
    der = bytearray(pkcs7_der(kit.sign(spec_json(GitHubAccessToken=TOKEN))))
    der[-1] ^= 0x01  # the last byte of a P-256 signature's "s"
    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification("PKCS7/JSON", pkcs7_pem(bytes(der)), settings_for(kit))

    assert "does not match its content" in caught.value.message
    assert TOKEN not in caught.value.message


def test_spec_signed_through_a_foreign_ca_is_refused(kit: SigningKit, tmp_path: Path) -> None:
    # Same signer name, and a CA with the same name as the trusted one but its own key.
    foreign = make_signing_kit(tmp_path / "foreign")
    assert foreign.root.common_name == kit.root.common_name
    payload = foreign.sign(spec_json())

    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification("PKCS7/JSON", payload, settings_for(kit))

    message = caught.value.message
    assert "not trusted by the CAs in" in message
    assert str(kit.ca_bundle) in message
    assert "unable to get local issuer certificate" in message
    assert "\n" not in message and ":error:" not in message


def test_system_ca_folder_is_not_trusted(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # openssl trusts $SSL_CERT_DIR (the default CA folder) unless told not to: put the
    # foreign CA there, as if it were a public CA installed on the host.
    foreign = make_signing_kit(tmp_path / "foreign", root_common_name="Some Public Root CA")
    folder = tmp_path / "system-certs"
    folder.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(foreign.root.certificate)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (folder / f"{subject_hash}.0").write_text(foreign.root.certificate_pem(), encoding="ascii")
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    monkeypatch.setenv("SSL_CERT_FILE", str(foreign.root.certificate))

    with pytest.raises(SpecSignatureError, match="not trusted by the CAs in"):
        verify_pkcs7_payload_with_openssl(foreign.sign(spec_json()), kit.ca_bundle, SIGNER)


def test_right_ca_but_wrong_signer_name_is_refused_naming_both(kit: SigningKit) -> None:
    impostor = make_signer(
        kit.ca_bundle.parent, kit.root, "codedeploy-signer-eu-west-1.amazonaws.com", "impostor"
    )
    payload = sign_content(spec_json(), impostor)

    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification("PKCS7/JSON", payload, settings_for(kit))

    message = caught.value.message
    assert "'codedeploy-signer-eu-west-1.amazonaws.com'" in message
    assert f"'{SIGNER}'" in message
    assert "deployment_signer_name" in message


def test_a_common_name_hidden_in_another_attribute_does_not_count(
    kit: SigningKit, tmp_path: Path
) -> None:
    # No common name, but an organisation that mimics a printed "CN=..." line.
    sneaky = make_signer(tmp_path, kit.root, "", "sneaky", organization=f"x\n    CN={SIGNER}")
    with pytest.raises(SpecSignatureError, match="signed by no common name, not by the expected"):
        verify_pkcs7_payload_with_openssl(sign_content(spec_json(), sneaky), kit.ca_bundle, SIGNER)


def test_signer_certificate_purpose_is_not_required(kit: SigningKit, tmp_path: Path) -> None:
    # As with the AWS agent: a signer certificate without S/MIME usages is still accepted
    # when it chains to the bundle and has the expected name.
    tls_only = make_signer(
        tmp_path, kit.root, SIGNER, "tls-only", extensions=["extendedKeyUsage=serverAuth"]
    )
    payload = sign_content(spec_json(), tls_only)
    assert verify_pkcs7_payload_with_openssl(payload, kit.ca_bundle, SIGNER).text == spec_json()


def test_a_non_ca_certificate_cannot_act_as_intermediate(kit: SigningKit, tmp_path: Path) -> None:
    # The trusted signer's own certificate (CA:FALSE) issues a certificate with the name.
    forged = make_signer(tmp_path, kit.signer, SIGNER, "forged")
    payload = sign_content(spec_json(), forged, extra_certificates=[kit.signer])

    with pytest.raises(SpecSignatureError, match="invalid CA certificate"):
        verify_pkcs7_payload_with_openssl(payload, kit.ca_bundle, SIGNER)


def test_intermediate_carried_in_the_message_is_accepted(tmp_path: Path) -> None:
    root = make_root_ca(tmp_path)
    intermediate = make_intermediate_ca(tmp_path, root)
    signer = make_signer(tmp_path, intermediate, SIGNER)
    bundle = write_ca_bundle(tmp_path / "bundle.pem", root)

    with_chain = sign_content(spec_json(), signer, extra_certificates=[intermediate])
    assert verify_pkcs7_payload_with_openssl(with_chain, bundle, SIGNER).text == spec_json()

    without_chain = sign_content(spec_json(), signer)
    with pytest.raises(SpecSignatureError, match="unable to get local issuer certificate"):
        verify_pkcs7_payload_with_openssl(without_chain, bundle, SIGNER)


def test_intermediate_in_the_bundle_is_accepted(tmp_path: Path) -> None:
    # The layout of AWS's host-agent-deployment-signer-ca-chain.pem: the whole chain in the
    # bundle, only the signer's certificate in the message.
    root = make_root_ca(tmp_path)
    intermediate = make_intermediate_ca(tmp_path, root)
    signer = make_signer(tmp_path, intermediate, SIGNER)
    bundle = write_ca_bundle(tmp_path / "chain.pem", root, intermediate)

    payload = sign_content(spec_json(), signer)
    assert verify_pkcs7_payload_with_openssl(payload, bundle, SIGNER).text == spec_json()


def test_an_intermediate_alone_in_the_bundle_is_not_a_trust_anchor(tmp_path: Path) -> None:
    root = make_root_ca(tmp_path)
    intermediate = make_intermediate_ca(tmp_path, root)
    signer = make_signer(tmp_path, intermediate, SIGNER)
    bundle = write_ca_bundle(tmp_path / "intermediate-only.pem", intermediate)

    with pytest.raises(SpecSignatureError, match="not trusted"):
        verify_pkcs7_payload_with_openssl(sign_content(spec_json(), signer), bundle, SIGNER)


def test_two_signers_are_refused(kit: SigningKit, tmp_path: Path) -> None:
    second = make_signer(tmp_path, kit.root, SIGNER, "second")
    signed_once = kit.sign(spec_json())
    signed_twice = subprocess.run(
        [
            "openssl",
            "smime",
            "-resign",
            "-binary",
            "-nodetach",
            "-inform",
            "PEM",
            "-outform",
            "PEM",
            "-signer",
            str(second.certificate),
            "-inkey",
            str(second.key),
        ],
        input=signed_once,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    with pytest.raises(SpecSignatureError, match="exactly one signer, not 2"):
        verify_pkcs7_payload_with_openssl(signed_twice, kit.ca_bundle, SIGNER)


def test_china_region_expects_the_com_cn_name(tmp_path: Path) -> None:
    config = AgentConfig(
        deployment_signer_ca_file=tmp_path / "ca.pem",
        deployment_signer_name="codedeploy-signer-{region}.amazonaws.com",
    )
    settings = SignatureSettings.from_config(config, "cn-north-1")
    assert settings.expected_signer == "codedeploy-signer-cn-north-1.amazonaws.com.cn"
    assert settings.ca_file == tmp_path / "ca.pem"
    assert settings.allow_unsigned is False

    china = make_signing_kit(tmp_path / "cn", region="cn-north-1")
    assert china.signer.common_name == "codedeploy-signer-cn-north-1.amazonaws.com.cn"
    spec = open_deployment_specification(
        "PKCS7/JSON",
        china.sign(spec_json()),
        SignatureSettings(china.ca_bundle, settings.expected_signer),
    )
    assert spec.application_name == "app"

    # The AWS name for us-east-1 is not accepted in a China region.
    us = make_signing_kit(tmp_path / "us", region="us-east-1")
    with pytest.raises(SpecSignatureError, match=r"\.amazonaws\.com\.cn"):
        open_deployment_specification(
            "PKCS7/JSON", us.sign(spec_json()), SignatureSettings(us.ca_bundle, SIGNER + ".cn")
        )


def test_expected_signer_name_rules() -> None:
    template = "codedeploy-signer-{region}.amazonaws.com"
    assert expected_signer_name(template, "eu-west-3") == signer_name_for("eu-west-3")
    assert expected_signer_name(template, "cn-northwest-1") == signer_name_for("cn-northwest-1")
    assert expected_signer_name("deploy-signer.example.com", "cn-north-1") == (
        "deploy-signer.example.com"
    )
    assert expected_signer_name("signer-{region}.corp", "us-west-2") == "signer-us-west-2.corp"
    with pytest.raises(SpecSignatureError, match="region is unknown"):
        expected_signer_name(template, "")


def test_settings_from_config_keep_the_operator_choices(tmp_path: Path) -> None:
    config = AgentConfig(
        deployment_signer_ca_file=tmp_path / "mine.pem",
        deployment_signer_name="signer.{region}.deploy.example.com",
        allow_unsigned_deployment_specs=True,
    )
    assert SignatureSettings.from_config(config, "us-west-2") == SignatureSettings(
        tmp_path / "mine.pem", "signer.us-west-2.deploy.example.com", True
    )


def test_unsigned_spec_is_refused_unless_allowed(kit: SigningKit) -> None:
    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification("TEXT/JSON", spec_json(), settings_for(kit))
    assert "unsigned" in caught.value.message
    assert "allow_unsigned_deployment_specs" in caught.value.message

    spec = open_deployment_specification(
        "TEXT/JSON", spec_json(), settings_for(kit, allow_unsigned=True)
    )
    assert spec.deployment_group_id == "group-id-1"


def test_unsigned_spec_needs_no_ca_file(tmp_path: Path) -> None:
    settings = SignatureSettings(tmp_path / "absent.pem", SIGNER, allow_unsigned=True)
    spec = open_deployment_specification("TEXT/JSON", spec_json(), settings)
    assert spec.application_name == "app"


def test_unknown_format_is_refused(kit: SigningKit) -> None:
    with pytest.raises(SpecSignatureError, match="unsupported envelope format 'XML/PKCS7'"):
        open_deployment_specification(
            "XML/PKCS7", spec_json(), settings_for(kit, allow_unsigned=True)
        )


def test_missing_ca_file_names_the_file_and_where_to_get_it(
    kit: SigningKit, tmp_path: Path
) -> None:
    absent = tmp_path / "certs" / "host-agent-deployment-signer-ca-chain.pem"
    with pytest.raises(SpecSignatureError) as caught:
        open_deployment_specification(
            "PKCS7/JSON", kit.sign(spec_json()), SignatureSettings(absent, SIGNER)
        )
    message = caught.value.message
    assert str(absent) in message and "does not exist" in message
    assert "deployment_signer_ca_file" in message


def test_ca_file_without_certificates_is_refused(kit: SigningKit, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="ascii")
    with pytest.raises(SpecSignatureError, match="holds no PEM certificate"):
        verify_pkcs7_payload_with_openssl(kit.sign(spec_json()), junk, SIGNER)

    folder = tmp_path / "a-folder.pem"
    folder.mkdir()
    with pytest.raises(SpecSignatureError, match="cannot be read"):
        verify_pkcs7_payload_with_openssl(kit.sign(spec_json()), folder, SIGNER)


def test_broken_certificate_in_the_ca_file_is_reported(kit: SigningKit, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", encoding="ascii"
    )
    with pytest.raises(SpecSignatureError) as caught:
        verify_pkcs7_payload_with_openssl(kit.sign(spec_json()), broken, SIGNER)
    assert str(broken) in caught.value.message
    assert "\n" not in caught.value.message


def test_payload_that_is_not_pkcs7_is_refused(kit: SigningKit) -> None:
    with pytest.raises(SpecSignatureError, match="not a PEM PKCS#7 message") as caught:
        open_deployment_specification("PKCS7/JSON", spec_json(), settings_for(kit))
    assert "\n" not in caught.value.message


def test_verified_but_invalid_spec_is_a_spec_error(kit: SigningKit) -> None:
    with pytest.raises(DeploymentSpecError, match="DeploymentGroupName"):
        open_deployment_specification(
            "PKCS7/JSON", kit.sign(spec_json(DeploymentGroupName="")), settings_for(kit)
        )


def test_missing_openssl_is_a_clear_error(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = kit.sign(spec_json())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpecSignatureError, match=r"openssl command .* not on PATH"):
        open_deployment_specification("PKCS7/JSON", payload, settings_for(kit))


# -- with no CA file configured (the default): integrity only, the signer logged ----------


def _unsigned_certificates_message(kit: SigningKit) -> str:
    """A valid signature whose message carries no certificate to check it with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    key = serialization.load_pem_private_key(kit.signer.key.read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(kit.signer.certificate.read_bytes())
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(spec_json().encode("utf-8"))
        .add_signer(certificate, key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.PEM,
            [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCerts],
        )
    )
    return signed.decode("ascii")


def test_without_a_ca_file_any_signer_is_accepted_and_logged(tmp_path: Path) -> None:
    stranger = make_signing_kit(tmp_path, signer_name="someone-else.example.com")
    with capture_logs() as logs:
        spec = open_deployment_specification(
            "PKCS7/JSON", stranger.sign(spec_json()), SignatureSettings()
        )
    assert spec.deployment_id == "d-ABCDEFGHI"
    [entry] = [e for e in logs if e["event"] == "deployment specification signed by"]
    assert entry["deployment_id"] == "d-ABCDEFGHI"
    assert entry["signer_subject"] == "C=US, O=CodeDeploy Test, CN=someone-else.example.com"
    assert entry["signer_issuer"] == "C=US, O=CodeDeploy Test, CN=CodeDeploy Test Root CA"
    assert entry["verified"] == "integrity only, signer logged"
    certificate = stranger.signer.certificate
    fingerprint = openssl_x509_fields(certificate, "-fingerprint", "-sha256")
    assert fingerprint.endswith("=" + entry["signer_sha256"])
    dates = openssl_x509_fields(certificate, "-dates", "-dateopt", "iso_8601")
    assert entry["signer_not_before"].replace("T", " ") in dates
    assert entry["signer_not_after"].replace("T", " ") in dates


def test_without_a_ca_file_altered_content_is_refused(kit: SigningKit) -> None:
    payload = replace_in_pkcs7(kit.sign(spec_json()), b'"group-a"', b'"group-b"')
    with pytest.raises(SpecSignatureError, match="does not match its content"):
        open_deployment_specification("PKCS7/JSON", payload, SignatureSettings())


def test_without_a_ca_file_a_broken_signature_is_refused(kit: SigningKit) -> None:
    der = bytearray(pkcs7_der(kit.sign(spec_json())))
    der[-1] ^= 0x01
    with pytest.raises(SpecSignatureError, match="does not match its content"):
        open_deployment_specification("PKCS7/JSON", pkcs7_pem(bytes(der)), SignatureSettings())


def test_without_a_ca_file_a_message_without_its_certificate_is_refused(kit: SigningKit) -> None:
    with pytest.raises(SpecSignatureError, match="carries no signer certificate") as caught:
        open_deployment_specification(
            "PKCS7/JSON", _unsigned_certificates_message(kit), SignatureSettings()
        )
    assert "\n" not in caught.value.message


def _wrapped_openssl(folder: Path, before: str) -> Path:
    """An ``openssl`` for PATH that runs the shell lines ``before`` (``$NOTED`` names the
    file it returns, for them to write to), then the real one."""
    real = shutil.which("openssl")
    assert real is not None
    noted = folder / "noted"
    folder.mkdir()
    wrapper = folder / "openssl"
    wrapper.write_text(
        f'#!/bin/sh\nNOTED="{noted}"\n{before}exec "{real}" "$@"\n', encoding="utf-8"
    )
    wrapper.chmod(0o755)
    return noted


def test_integrity_only_does_not_load_the_hosts_ca_file(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # openssl would read the default CA file (every CA of the host) for nothing: it checks
    # no chain. Where an operator's variables point still counts for the other policies.
    # An openssl that notes where the CA variables point.
    noted = _wrapped_openssl(tmp_path / "bin", 'echo "$SSL_CERT_FILE|$SSL_CERT_DIR" >> "$NOTED"\n')
    monkeypatch.setenv("PATH", f"{noted.parent}:{os.environ['PATH']}")
    # The program's environment, as the daemon passes it down.
    environment = {
        **os.environ,
        "SSL_CERT_FILE": str(kit.ca_bundle),
        "SSL_CERT_DIR": str(tmp_path),
    }
    spec = open_deployment_specification(
        "PKCS7/JSON", kit.sign(spec_json()), SignatureSettings(environment=environment)
    )
    assert spec.application_name == "app"
    [integrity] = noted.read_text(encoding="utf-8").splitlines()
    ca_file, ca_folder = integrity.split("|")
    assert not Path(ca_file).exists() and not Path(ca_folder).exists()
    open_deployment_specification(
        "PKCS7/JSON",
        kit.sign(spec_json()),
        SignatureSettings("system", SIGNER, environment=environment),
    )
    assert noted.read_text(encoding="utf-8").splitlines()[1] == f"{kit.ca_bundle}|{tmp_path}"


# An openssl that knows no CA stores, as before OpenSSL 3.0: it notes each call's arguments
# and refuses -no-CAstore in 1.1.1's words.
_WITHOUT_CA_STORES = (
    'echo "$*" >> "$NOTED"\n'
    'for argument in "$@"; do\n'
    '  if [ "$argument" = "-no-CAstore" ]; then\n'
    '    echo "smime: Unrecognized flag no-CAstore" >&2\n'
    '    echo "smime: Use -help for summary." >&2\n'
    "    exit 1\n"
    "  fi\n"
    "done\n"
)


def test_a_ca_file_is_checked_by_an_openssl_without_ca_stores(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL 1.1.1 (Debian 11, Ubuntu 20.04, RHEL 8) has no -no-CAstore.
    calls = _wrapped_openssl(tmp_path / "bin", _WITHOUT_CA_STORES)
    monkeypatch.setenv("PATH", f"{calls.parent}:{os.environ['PATH']}")
    spec = open_deployment_specification("PKCS7/JSON", kit.sign(spec_json()), settings_for(kit))
    assert spec.application_name == "app"
    refused, accepted = calls.read_text(encoding="utf-8").splitlines()
    assert "-no-CAstore" in refused
    assert "-no-CAstore" not in accepted and "-no-CApath" in accepted
    # The configured bundle alone still vouches for a signer.
    foreign = make_signing_kit(tmp_path / "foreign", root_common_name="Some Public Root CA")
    with pytest.raises(SpecSignatureError, match="not trusted by the CAs in"):
        open_deployment_specification("PKCS7/JSON", foreign.sign(spec_json()), settings_for(kit))


def test_the_environment_is_neither_compared_nor_shown() -> None:
    settings = SignatureSettings(environment={"AWS_SECRET_ACCESS_KEY": "not-to-be-shown"})
    assert settings == SignatureSettings()
    assert "not-to-be-shown" not in repr(settings)


def test_the_signer_name_is_checked_only_with_a_ca_file(tmp_path: Path) -> None:
    config = AgentConfig(deployment_signer_name="signer-{region}.example.com")
    assert SignatureSettings.from_config(config, "us-east-1") == SignatureSettings()
    assert SignatureSettings().policy() == "integrity only, signer logged"
    pinned = AgentConfig(
        deployment_signer_ca_file=tmp_path / "ca.pem",
        deployment_signer_name="signer-{region}.example.com",
    )
    settings = SignatureSettings.from_config(pinned, "us-east-1")
    assert settings.policy() == (
        f"chain checked against {tmp_path / 'ca.pem'}, name signer-us-east-1.example.com"
    )


# -- deployment_signer_ca_file: system (openssl's default CA paths) -------------------------


def test_system_store_refuses_a_ca_that_is_not_in_it(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_signing_kit(tmp_path / "other", root_common_name="Another Root CA")
    empty = tmp_path / "empty-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    with pytest.raises(SpecSignatureError, match="not trusted by the CAs in the system CA store"):
        open_deployment_specification(
            "PKCS7/JSON", kit.sign(spec_json()), SignatureSettings("system", SIGNER)
        )


def test_system_store_accepts_a_ca_that_is_in_it(
    kit: SigningKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(kit.ca_bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    spec = open_deployment_specification(
        "PKCS7/JSON", kit.sign(spec_json()), SignatureSettings("system", SIGNER)
    )
    assert spec.application_name == "app"
    with pytest.raises(SpecSignatureError, match="not by the expected signer"):
        open_deployment_specification(
            "PKCS7/JSON", kit.sign(spec_json()), SignatureSettings("system", "other.example.com")
        )
