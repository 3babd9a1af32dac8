"""The server's signer: made once, never overwritten, and what it signs is what the
agent's own verification accepts (chain to the published CA, and the signer's name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.deployment_specification.signature import (
    SpecSignatureError,
    verify_pkcs7_payload_with_openssl,
)
from server.signer.authority import SignerError, ensure_signer_on_disk
from server.signer.signing import load_deployment_signer_from_disk
from tests.support.server import ServerFiles
from tests.support.signing import make_signing_kit


def test_a_signed_specification_passes_the_agents_strict_verification(tmp_path: Path) -> None:
    files = ensure_signer_on_disk(tmp_path / "data", "signer.example")
    spec = json.dumps({"DeploymentId": "d-ABCDEFGHI", "ApplicationName": "app"})
    payload = load_deployment_signer_from_disk(files).sign(spec)
    verified = verify_pkcs7_payload_with_openssl(payload, files.ca_file, "signer.example")
    assert verified.text == spec
    with pytest.raises(SpecSignatureError, match="not by the expected signer"):
        verify_pkcs7_payload_with_openssl(payload, files.ca_file, "someone.else")
    other_ca = make_signing_kit(tmp_path / "other").ca_bundle
    with pytest.raises(SpecSignatureError, match="not trusted"):
        verify_pkcs7_payload_with_openssl(payload, other_ca, None)


def test_the_signer_is_made_once_and_never_remade(tmp_path: Path) -> None:
    files = ensure_signer_on_disk(tmp_path, "first")
    before = {path.name: path.read_bytes() for path in files.folder.iterdir()}
    assert files.key_file.stat().st_mode & 0o077 == 0
    again = ensure_signer_on_disk(tmp_path, "second")
    assert {path.name: path.read_bytes() for path in again.folder.iterdir()} == before
    files.key_file.unlink()
    with pytest.raises(SignerError, match=r"lacks signer\.key"):
        ensure_signer_on_disk(tmp_path, "first")


def test_the_signer_command_prints_what_agents_configure(tmp_path: Path) -> None:
    server = ServerFiles(tmp_path)
    server.write_config("signer_name: fleet-signer\n")
    document = json.loads(server.admin("signer").stdout)
    assert document == {
        "ca_file": str(server.data_dir / "signer" / "ca.pem"),
        "signer_name": "fleet-signer",
    }
