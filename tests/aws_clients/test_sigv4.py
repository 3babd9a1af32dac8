"""The agent's own SigV4 signer of command-service requests, checked against botocore's
signer (the reference every AWS service accepts) and the server's verifier."""

from __future__ import annotations

import datetime
from typing import Dict, Optional

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from agent.aws_clients.sigv4 import RequestSigner, SigningCredentials, amz_date
from server.errors import ApiError
from server.request_auth.sigv4 import ReceivedRequest, parse_authorization, verify_signature

MOMENT = datetime.datetime(2026, 12, 2, 17, 30, 5, tzinfo=datetime.timezone.utc)
BODY = b'{"HostCommandIdentifier":"hc-1","Diagnostics":{"Format":"JSON","Payload":"{}"}}'
UNSIGNED = {
    "content-type": "application/x-amz-json-1.1",
    "host": "codedeploy-commands.eu-west-1.amazonaws.com",
    "x-amz-target": "CodeDeployCommandService_v20141006.PutHostCommandAcknowledgement",
    "x-amz-codedeploy-agent-version": "0.1.0",
}


def _botocore_authorization(
    monkeypatch: pytest.MonkeyPatch, token: Optional[str], headers: Dict[str, str]
) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: MOMENT)
    request = AWSRequest(
        method="POST",
        url=f"https://{headers['host']}/",
        data=BODY,
        headers={name: value for name, value in headers.items() if name != "host"},
    )
    signer = botocore.auth.SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        "codedeploy-commands",
        "eu-west-1",
    )
    signer.add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEPT//////////wEaDEXAMPLE"])
def test_the_signature_is_the_one_botocore_computes(
    monkeypatch: pytest.MonkeyPatch, token: Optional[str]
) -> None:
    signer = RequestSigner("eu-west-1", "codedeploy-commands")
    credentials = SigningCredentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token
    )
    signed = signer.signed_headers(credentials, UNSIGNED, BODY, MOMENT.timestamp())
    assert signed["x-amz-date"] == "20261202T173005Z"
    assert signed.get("x-amz-security-token") == token
    assert signed["authorization"] == _botocore_authorization(monkeypatch, token, UNSIGNED)


def test_header_values_with_runs_of_spaces_sign_as_botocore_signs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {**UNSIGNED, "x-amz-codedeploy-agent-version": "  0.1.0   beta  "}
    signer = RequestSigner("eu-west-1", "codedeploy-commands")
    credentials = SigningCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    signed = signer.signed_headers(credentials, headers, BODY, MOMENT.timestamp())
    assert signed["authorization"] == _botocore_authorization(monkeypatch, None, headers)


def test_the_signing_key_of_a_new_day_or_secret_is_derived_again() -> None:
    signer = RequestSigner("eu-west-1", "codedeploy-commands")
    first = SigningCredentials("AKID1", "secret-one")
    second = SigningCredentials("AKID1", "secret-two")
    day = MOMENT.timestamp()

    def signature(credentials: SigningCredentials, moment: float) -> str:
        header = signer.signed_headers(credentials, UNSIGNED, BODY, moment)["authorization"]
        return header.rpartition("Signature=")[2]

    today = signature(first, day)
    assert signature(second, day) != today
    assert signature(first, day) == today
    # Same time of day, next day: a different key (the date is in the string signed too).
    tomorrow = RequestSigner("eu-west-1", "codedeploy-commands")
    expected = tomorrow.signed_headers(first, UNSIGNED, BODY, day + 86400)["authorization"]
    assert signer.signed_headers(first, UNSIGNED, BODY, day + 86400)["authorization"] == expected


def test_the_servers_verifier_accepts_the_signature_and_refuses_a_changed_body() -> None:
    signer = RequestSigner("us-east-1", "codedeploy-commands")
    credentials = SigningCredentials("AKIDHOST", "host-secret", "session-token")
    signed = signer.signed_headers(credentials, UNSIGNED, BODY, MOMENT.timestamp())
    claim = parse_authorization(signed["authorization"])
    received = ReceivedRequest("POST", "/", "", signed, BODY)
    verify_signature(received, claim, "host-secret", MOMENT.timestamp(), 300)
    with pytest.raises(ApiError, match="signature we calculated does not match"):
        changed = ReceivedRequest("POST", "/", "", signed, BODY.replace(b"hc-1", b"hc-2"))
        verify_signature(changed, claim, "host-secret", MOMENT.timestamp(), 300)


def test_the_signing_time_is_written_in_utc() -> None:
    assert amz_date(0) == "19700101T000000Z"
    assert amz_date(MOMENT.timestamp()) == "20261202T173005Z"


def test_the_secret_never_shows_in_the_credentials_repr() -> None:
    text = repr(SigningCredentials("AKIDHOST", "host-secret", "session-token"))
    assert "host-secret" not in text and "session-token" not in text
