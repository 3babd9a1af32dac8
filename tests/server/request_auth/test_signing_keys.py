"""The derived signing keys the server remembers: the same key as derived anew, one per
secret and scope, and a signature checked with them as without them."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from server.errors import ApiError
from server.request_auth.sigv4 import (
    ReceivedRequest,
    SigningKeys,
    parse_authorization,
    signing_key,
    verify_signature,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _signed(secret: str, moment: datetime.datetime) -> ReceivedRequest:
    request = AWSRequest(
        method="POST", url="http://127.0.0.1:1/", data=b"{}", headers={"X-Amz-Target": "x.Y"}
    )
    request.context["timestamp"] = moment.strftime("%Y%m%dT%H%M%SZ")
    SigV4Auth(Credentials("AKIDEXAMPLE", secret), "codedeploy", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:1"
    return ReceivedRequest("POST", "/", "", headers, b"{}")


def test_a_remembered_key_is_the_key_derived_anew_per_secret_and_scope() -> None:
    keys = SigningKeys()
    moment = datetime.datetime.now(datetime.timezone.utc)
    claim = parse_authorization(_signed(SECRET, moment).headers["authorization"])
    first = keys.get(SECRET, claim)
    assert first == signing_key(SECRET, claim)
    assert keys.get(SECRET, claim) is first
    other = keys.get(SECRET + "x", claim)
    assert other == signing_key(SECRET + "x", claim) != first


def test_a_signature_is_checked_the_same_with_remembered_keys() -> None:
    keys = SigningKeys()
    moment = datetime.datetime.now(datetime.timezone.utc)
    request = _signed(SECRET, moment)
    claim = parse_authorization(request.headers["authorization"])
    for _ in range(2):
        verify_signature(request, claim, SECRET, moment.timestamp(), 300, keys)
        with pytest.raises(ApiError, match="signature we calculated"):
            verify_signature(request, claim, SECRET + "x", moment.timestamp(), 300, keys)


@pytest.mark.parametrize("amz_date", ["20261302T010203Z", "2026120T010203Z", "20261202 010203Z"])
def test_a_malformed_signing_time_is_refused(amz_date: str) -> None:
    moment = datetime.datetime.now(datetime.timezone.utc)
    request = _signed(SECRET, moment)
    claim = parse_authorization(request.headers["authorization"])
    headers = dict(request.headers, **{"x-amz-date": amz_date})
    changed = ReceivedRequest("POST", "/", "", headers, b"{}")
    with pytest.raises(ApiError, match="valid 'X-Amz-Date'"):
        verify_signature(changed, claim, SECRET, moment.timestamp(), 300, SigningKeys())
