"""Who may call the server: every request signed with SigV4 by a key of the right kind.

Against a real server: the AWS CLI with a wrong secret, an unknown key, a host key, a
revoked key; requests signed by botocore's own signer (so the check is held to AWS's
definition of the signature) for what the CLI cannot send: no signature, an old or
future signing time, a body changed after signing, another region or service, an
unknown operation, a body that is not JSON.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
import yaml
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from tests.support.aws_cli import AwsCli
from tests.support.server import ServerFiles, ServerProcess


def signed_post(
    url: str,
    key: Dict[str, str],
    target: Optional[str],
    body: bytes = b"{}",
    *,
    when: Optional[datetime.datetime] = None,
    region: str = "us-east-1",
    service: str = "codedeploy",
    body_sent: Optional[bytes] = None,
) -> Tuple[int, Dict[str, Any]]:
    """POST ``body`` signed by botocore's SigV4 signer at ``when`` (now by default)."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    signer = SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), service, region)
    moment = when or datetime.datetime.now(datetime.timezone.utc)
    request.context["timestamp"] = moment.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)},"
        f" SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))},"
        f" Signature={signature}"
    )
    return raw_post(
        url, body_sent if body_sent is not None else body, dict(request.headers.items())
    )


def raw_post(url: str, body: bytes, headers: Dict[str, str]) -> Tuple[int, Dict[str, Any]]:
    sent = urllib.request.Request(url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_signed_request_is_answered(server: ServerProcess, operator: Dict[str, str]) -> None:
    status, document = signed_post(server.url, operator, "CodeDeploy_20141006.ListApplications")
    assert (status, document) == (200, {"applications": []})


def test_no_anonymous_access(server: ServerProcess) -> None:
    status, document = raw_post(
        server.url, b"{}", {"X-Amz-Target": "CodeDeploy_20141006.ListApplications"}
    )
    assert (status, document["__type"]) == (400, "MissingAuthenticationTokenException")


def test_a_wrong_secret_is_refused(
    tmp_path: Path, server: ServerProcess, operator: Dict[str, str]
) -> None:
    cli = AwsCli(tmp_path, server.url, {**operator, "SecretAccessKey": "x" * 40})
    assert cli.error("deploy", "list-applications").startswith(
        "An error occurred (InvalidSignatureException) when calling the ListApplications"
        " operation: The request signature we calculated does not match the signature you provided."
    )


def test_an_unknown_key_is_refused(tmp_path: Path, server: ServerProcess) -> None:
    cli = AwsCli(
        tmp_path, server.url, {"AccessKeyId": "CDSKNOSUCHKEY0000000", "SecretAccessKey": "y" * 40}
    )
    assert cli.error("deploy", "list-applications") == (
        "An error occurred (UnrecognizedClientException) when calling the ListApplications"
        " operation: The security token included in the request is invalid."
    )


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_signature_outside_the_clock_window_is_refused(
    server: ServerProcess, operator: Dict[str, str], minutes: int
) -> None:
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    status, document = signed_post(
        server.url, operator, "CodeDeploy_20141006.ListApplications", when=when
    )
    assert (status, document["__type"]) == (400, "InvalidSignatureException")
    assert document["message"].startswith(
        "Signature expired" if minutes < 0 else "Signature not yet current"
    )


def test_a_body_changed_after_signing_is_refused(
    server: ServerProcess, operator: Dict[str, str]
) -> None:
    status, document = signed_post(
        server.url,
        operator,
        "CodeDeploy_20141006.CreateApplication",
        b'{"applicationName": "signed"}',
        body_sent=b'{"applicationName": "forged"}',
    )
    assert (status, document["__type"]) == (400, "InvalidSignatureException")
    _, listed = signed_post(server.url, operator, "CodeDeploy_20141006.ListApplications")
    assert "forged" not in listed["applications"]


@pytest.mark.parametrize(
    ("region", "service", "message"),
    [
        ("eu-west-1", "codedeploy", "Credential should be scoped to a valid region."),
        (
            "us-east-1",
            "s3",
            "Credential should be scoped to correct service: 's3' is not served here.",
        ),
    ],
)
def test_a_signature_scoped_elsewhere_is_refused(
    server: ServerProcess, operator: Dict[str, str], region: str, service: str, message: str
) -> None:
    status, document = signed_post(
        server.url, operator, "CodeDeploy_20141006.ListApplications", region=region, service=service
    )
    assert (status, document) == (400, {"__type": "InvalidSignatureException", "message": message})


@pytest.mark.parametrize(
    ("target", "body", "error"),
    [
        ("CodeDeploy_20141006.LaunchRockets", b"{}", "UnknownOperationException"),
        (None, b"{}", "UnknownOperationException"),
        ("CodeDeploy_20141006.ListApplications", b"{not json", "SerializationException"),
        ("CodeDeploy_20141006.ListApplications", b"[1, 2]", "SerializationException"),
        (
            "CodeDeploy_20141006.CreateApplication",
            b'{"applicationName": 7}',
            "InvalidApplicationNameException",
        ),
    ],
)
def test_bad_requests_are_400_in_the_json_shape(
    server: ServerProcess, operator: Dict[str, str], target: Optional[str], body: bytes, error: str
) -> None:
    status, document = signed_post(server.url, operator, target, body)
    assert (status, document["__type"]) == (400, error)
    assert set(document) == {"__type", "message"}


def test_a_host_key_may_not_call_the_codedeploy_api(
    tmp_path: Path, files: ServerFiles, server: ServerProcess
) -> None:
    host_file = yaml.safe_load(files.admin("keys", "create-host", "web-7").stdout)
    cli = AwsCli(
        tmp_path,
        server.url,
        {
            "AccessKeyId": host_file["aws_access_key_id"],
            "SecretAccessKey": host_file["aws_secret_access_key"],
        },
    )
    assert cli.error("deploy", "create-application", "--application-name", "by-host") == (
        "An error occurred (AccessDeniedException) when calling the CreateApplication operation:"
        f" User: {host_file['iam_user_arn']} is not authorized to perform:"
        " codedeploy:CreateApplication (a host key may not call this API)"
    )


def test_an_operator_key_may_not_call_the_command_service(
    server: ServerProcess, operator: Dict[str, str]
) -> None:
    status, document = signed_post(
        server.url,
        operator,
        "CodeDeployCommandService_v20141006.PollHostCommand",
        b'{"HostIdentifier": "x"}',
        service="codedeploy-commands",
    )
    assert (status, document["__type"]) == (400, "AccessDeniedException")


def test_a_revoked_key_is_refused_by_the_running_server_within_seconds(
    tmp_path: Path, files: ServerFiles, server: ServerProcess
) -> None:
    key = files.create_operator("leaving")
    cli = AwsCli(tmp_path, server.url, key)
    cli.ok("deploy", "list-applications")
    files.admin("keys", "revoke", key["AccessKeyId"])
    deadline = time.monotonic() + 10
    while True:
        completed = cli.run("deploy", "list-applications")
        if completed.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert completed.stderr.strip() == (
        "An error occurred (UnrecognizedClientException) when calling the ListApplications"
        " operation: The security token included in the request is invalid."
    )
