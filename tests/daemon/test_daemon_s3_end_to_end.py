"""``codedeploy-agent run`` deploying S3 revisions end to end, and S3 faults reported by it.

The daemon is a real process polling the command service stub; bundles live in moto's S3
server (or, for faults moto cannot stage, the S3 stub) on loopback, reached through
``:s3_endpoint_override:`` with AWS credentials and region from the daemon's environment.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import pytest

from agent import __version__
from tests.support.command_service import (
    HOST,
    CommandServiceStub,
    acknowledgements_of,
    completion_of,
    queue_deployment,
)
from tests.support.daemon import AgentDaemon
from tests.support.http_proxy import ForwardingProxy, without_feature_ids
from tests.support.on_premises_files import (
    ROTATED_SECRET,
    ROTATED_TOKEN,
    SESSION_SECRET,
    session_file,
    write_credentials,
)
from tests.support.on_premises_files import SESSION_TOKEN as ONPREM_SESSION_TOKEN
from tests.support.s3_servers import StubObject, moto_s3_server, s3_client, stub_s3_server
from tests.support.signing import SigningKit, make_signing_kit
from tests.support.traced_revisions import SERVICE_ORDER, spec_json, tgz_revision
from tests.support.waiting import wait_until

BUCKET = "revisions"
ACCESS_KEY = "AKIDDAEMONS3TEST0001"
SECRET_KEY = "daemon-s3-secret-key-not-real-0123456789"
SESSION_TOKEN = "daemon-s3-session-token-not-real-abcdefghijklmnop"
HOOKED = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        s3 = s3_client(endpoint, ACCESS_KEY, SECRET_KEY)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield endpoint


def s3_spec(deployment_id: str, key: str, **s3_fields: str) -> str:
    revision: Dict[str, object] = {
        "RevisionType": "S3",
        "S3Revision": {"Bucket": BUCKET, "Key": key, "BundleType": "tgz", **s3_fields},
    }
    return spec_json(deployment_id, Path("/unused"), Revision=revision)


def s3_daemon(
    base: Path, stub: CommandServiceStub, kit: SigningKit, s3_endpoint: str
) -> AgentDaemon:
    """An agent under ``base`` whose S3 endpoint is ``s3_endpoint``, with the S3 tests'
    keys and session token in its environment and its AWS traffic in the wire log."""
    return AgentDaemon(
        base,
        stub,
        kit,
        credentials={
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
        },
        extra_config=f":s3_endpoint_override: '{s3_endpoint}'\n:log_aws_wire: true\n",
    )


def _run_to_completion(stub: CommandServiceStub, ids: List[str]) -> List[Dict[str, object]]:
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), [
        completion_of(stub, i) for i in ids
    ]
    reports: List[Dict[str, object]] = []
    for host_command in ids:
        [report] = completion_of(stub, host_command)  # exactly once
        reports.append(report)
    return reports


def _payload(report: Dict[str, object]) -> Dict[str, Any]:
    payload = report["payload"]
    assert isinstance(payload, dict)
    return payload


def test_two_in_place_deployments_of_s3_revisions(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit, moto_endpoint: str
) -> None:
    daemon = s3_daemon(tmp_path, stub, kit, moto_endpoint)
    s3 = s3_client(moto_endpoint, ACCESS_KEY, SECRET_KEY)
    key = f"{tmp_path.name}/app.tgz"
    first = s3.put_object(
        Bucket=BUCKET, Key=key, Body=tgz_revision(daemon.trace, daemon.destination, "one", HOOKED)
    )
    second = s3.put_object(
        Bucket=BUCKET, Key=key, Body=tgz_revision(daemon.trace, daemon.destination, "two", HOOKED)
    )
    try:
        daemon.run(stdout=subprocess.DEVNULL)
        # The first deployment names the older version of the object explicitly.
        ids = queue_deployment(
            stub,
            "d-S3FIRST01",
            kit.sign(s3_spec("d-S3FIRST01", key, Version=first["VersionId"], ETag=first["ETag"])),
            commands=SERVICE_ORDER,
        )
        reports = _run_to_completion(stub, ids)
        assert [r["CommandStatus"] for r in reports] == ["Succeeded"] * len(SERVICE_ORDER)
        assert [len(acknowledgements_of(stub, i)) for i in ids] == [1] * len(SERVICE_ORDER)
        assert (daemon.destination / "index.html").read_text(encoding="utf-8") == "one\n"
        etag_one = first["ETag"]
        expected_one = [
            f"{event} one d-S3FIRST01 {BUCKET} {key} {first['VersionId']} {etag_one}"
            for event in HOOKED[1:]  # no ApplicationStop before the first deployment
        ]
        assert daemon.trace_lines() == expected_one

        # The second one takes the latest version; its ApplicationStop runs the first
        # revision's script, with this deployment's bundle in the environment.
        ids = queue_deployment(
            stub,
            "d-S3SECOND1",
            kit.sign(s3_spec("d-S3SECOND1", key, ETag=second["ETag"].strip('"'))),
            commands=SERVICE_ORDER,
        )
        reports = _run_to_completion(stub, ids)
        assert [r["CommandStatus"] for r in reports] == ["Succeeded"] * len(SERVICE_ORDER)
        assert all(_payload(r)["error_code"] == 0 for r in reports)
        assert (daemon.destination / "index.html").read_text(encoding="utf-8") == "two\n"
        etag_two = second["ETag"].strip('"')
        assert daemon.trace_lines()[len(expected_one) :] == [
            f"ApplicationStop one d-S3SECOND1 {BUCKET} {key}  {etag_two}",
            *(f"{event} two d-S3SECOND1 {BUCKET} {key}  {etag_two}" for event in HOOKED[1:]),
        ]
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()

    logs = daemon.logs()
    assert "deployment_id=d-S3SECOND1" in logs
    wire = (daemon.log_dir / "codedeploy-agent.aws_wire.log").read_text(encoding="utf-8")
    assert "request codedeploy-commands PollHostCommand: POST" in wire
    assert "response codedeploy-commands PutHostCommandComplete: status 200" in wire
    assert "request s3 HeadObject: HEAD" in wire
    assert "response s3 GetObject: status 200" in wire
    for secret in (SECRET_KEY, SESSION_TOKEN, ACCESS_KEY):
        assert secret not in logs


def _deploy_and_expect_download_failure(
    daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit, spec: str, expected: str
) -> str:
    """Queue DownloadBundle, BeforeInstall, Install of a deployment whose download fails;
    check each is reported once and the daemon keeps going; return the download message."""
    ids = queue_deployment(
        stub,
        "d-S3FAULT01",
        kit.sign(spec),
        commands=("DownloadBundle", "BeforeInstall", "Install"),
    )
    reports = _run_to_completion(stub, ids)
    download = _payload(reports[0])
    assert reports[0]["CommandStatus"] == "Failed"
    assert download["error_code"] == 5  # UnknownError: the protocol's code for non-script failures
    message = str(download["message"])
    assert expected in message, message
    assert "\n" not in message and "Traceback" not in message
    # With nothing downloaded, BeforeInstall has no scripts to run: it is acknowledged as
    # a no-op and succeeds without running anything (the AWS agent fails it instead, for
    # want of an appspec). Install cannot do without the revision and says so, once.
    before_install, install = reports[1:]
    assert acknowledgements_of(stub, ids[1]) == [True]
    assert before_install["CommandStatus"] == "Succeeded"
    assert install["CommandStatus"] == "Failed"
    install_message = str(_payload(install)["message"])
    assert _payload(install)["error_code"] == 5
    assert "appspec" in install_message.lower() and "\n" not in install_message, install_message
    assert daemon.trace_lines() == []
    assert not (daemon.destination / "index.html").exists()
    assert daemon.process is not None and daemon.process.poll() is None
    assert SESSION_TOKEN not in daemon.logs() and SECRET_KEY not in daemon.logs()
    return message


def test_etag_mismatch_fails_download_bundle(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit, moto_endpoint: str
) -> None:
    daemon = s3_daemon(tmp_path, stub, kit, moto_endpoint)
    key = f"{tmp_path.name}/app.tgz"
    put = s3_client(moto_endpoint, ACCESS_KEY, SECRET_KEY).put_object(
        Bucket=BUCKET, Key=key, Body=tgz_revision(daemon.trace, daemon.destination, "x", HOOKED)
    )
    wrong = "0123456789abcdef0123456789abcdef"
    try:
        daemon.run(stdout=subprocess.DEVNULL)
        message = _deploy_and_expect_download_failure(
            daemon, stub, kit, s3_spec("d-S3FAULT01", key, ETag=wrong), f"ETag {put['ETag'][1:-1]}"
        )
        assert wrong in message and f"s3://{BUCKET}/{key}" in message
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()


def test_missing_object_fails_download_bundle(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit, moto_endpoint: str
) -> None:
    daemon = s3_daemon(tmp_path, stub, kit, moto_endpoint)
    key = f"{tmp_path.name}/nowhere.tgz"
    try:
        daemon.run(stdout=subprocess.DEVNULL)
        message = _deploy_and_expect_download_failure(
            daemon, stub, kit, s3_spec("d-S3FAULT01", key), "does not exist"
        )
        assert f"s3://{BUCKET}/{key}" in message
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()


def test_access_denied_fails_download_bundle(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    refused = StubObject(BUCKET, "app.tgz", b"unused", status=403)
    with stub_s3_server(refused) as endpoint:
        daemon = s3_daemon(tmp_path, stub, kit, endpoint)
        try:
            daemon.run(stdout=subprocess.DEVNULL)
            message = _deploy_and_expect_download_failure(
                daemon, stub, kit, s3_spec("d-S3FAULT01", "app.tgz"), "access denied"
            )
            assert f"s3://{BUCKET}/app.tgz" in message
            assert daemon.stop() == 0
        finally:
            daemon.cleanup()
    # The daemon's S3 client used the environment's credentials.
    assert any(
        headers.get("X-Amz-Security-Token") == SESSION_TOKEN
        and ACCESS_KEY in headers.get("Authorization", "")
        for *_, headers in refused.requests
    )


def test_truncated_body_fails_download_bundle(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    bundle = tgz_revision(tmp_path / "trace.log", tmp_path / "www", "cut", HOOKED)
    cut = StubObject(BUCKET, "app.tgz", bundle, cut_after=len(bundle) // 8)
    with stub_s3_server(cut) as endpoint:
        daemon = s3_daemon(tmp_path, stub, kit, endpoint)
        try:
            daemon.run(stdout=subprocess.DEVNULL)
            message = _deploy_and_expect_download_failure(
                daemon, stub, kit, s3_spec("d-S3FAULT01", "app.tgz"), "cut short"
            )
            assert f"s3://{BUCKET}/app.tgz" in message
            assert daemon.stop() == 0
        finally:
            daemon.cleanup()
    assert not list(daemon.root.path.rglob("bundle.tar"))


def test_an_on_premises_host_fetches_with_its_own_credentials_and_region(
    tmp_path: Path, stub: CommandServiceStub
) -> None:
    region = "eu-west-1"
    kit = make_signing_kit(tmp_path / "signing", region=region)
    on_premises_key, on_premises_secret = "AKIDONPREMISES000001", "on-premises-secret-not-real"
    bundle = tgz_revision(tmp_path / "trace.log", tmp_path / "www", "onprem", HOOKED)
    served = StubObject(BUCKET, "app.tgz", bundle)
    with stub_s3_server(served) as endpoint:
        daemon = s3_daemon(tmp_path, stub, kit, endpoint)
        (tmp_path / "no-onpremises.yml").write_text(
            f"region: {region}\n"
            f"iam_user_arn: {HOST}\n"
            f"aws_access_key_id: {on_premises_key}\n"
            f"aws_secret_access_key: {on_premises_secret}\n",
            encoding="utf-8",
        )
        # Neither identity, region nor credentials come from the environment.
        without = (
            "AWS_REGION",
            "AWS_HOST_IDENTIFIER",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        )
        _download_and_install(daemon, stub, kit, "d-S3ONPREM1", served, without=without)
    assert (tmp_path / "www" / "index.html").read_text(encoding="utf-8") == "onprem\n"
    authorizations = [headers.get("Authorization", "") for *_, headers in served.requests]
    assert authorizations and all(
        f"Credential={on_premises_key}/" in value and f"/{region}/s3/" in value
        for value in authorizations
    ), authorizations
    assert on_premises_secret not in daemon.logs()


def test_a_rotated_credentials_file_briefly_missing_is_one_line_and_polling_goes_on(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    credentials = tmp_path / "session-credentials"
    write_credentials(credentials, "ASIAROTATE0000000001", SESSION_SECRET, ONPREM_SESSION_TOKEN)
    bundle = tgz_revision(tmp_path / "trace.log", tmp_path / "www", "rotated", HOOKED)
    served = StubObject(BUCKET, "app.tgz", bundle)
    with stub_s3_server(served) as endpoint:
        daemon = s3_daemon(tmp_path, stub, kit, endpoint)
        daemon.on_premises_file.write_text(session_file(credentials), encoding="utf-8")
        try:
            daemon.run(
                stdout=subprocess.DEVNULL,
                without=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
            )
            assert wait_until(lambda: len(stub.requests) > 0)
            # The rotation job replaces the file: for a moment, there is none.
            credentials.unlink()
            expected = (
                f"command service PollHostCommand failed: credentials file {credentials}"
                " does not exist"
            )
            assert wait_until(lambda: expected in daemon.logs()), daemon.logs()[-2000:]
            write_credentials(credentials, "ASIAROTATE0000000002", ROTATED_SECRET, ROTATED_TOKEN)
            _expect_download_and_install(stub, kit, "d-S3ROTATE1", served)
            assert daemon.stop() == 0
        finally:
            daemon.cleanup()
    logs = daemon.logs()
    # A failed call the poll loop knows, not a bug of ours: no traceback.
    assert "command service call failed; backing off" in logs
    assert "poll failed unexpectedly" not in logs and "Traceback" not in logs
    assert all(
        "Credential=ASIAROTATE0000000002/" in headers["Authorization"]
        for *_, headers in served.requests
    )
    for secret in (SESSION_SECRET, ONPREM_SESSION_TOKEN, ROTATED_SECRET, ROTATED_TOKEN):
        assert secret not in logs


def _download_and_install(
    daemon: AgentDaemon,
    stub: CommandServiceStub,
    kit: SigningKit,
    deployment_id: str,
    served: StubObject,
    without: Sequence[str] = (),
) -> None:
    """Run ``daemon`` (its environment ``without`` those variables) through DownloadBundle
    and Install of the object ``served``; both succeed, and the daemon stops cleanly."""
    try:
        daemon.run(stdout=subprocess.DEVNULL, without=without)
        _expect_download_and_install(stub, kit, deployment_id, served)
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()


def _expect_download_and_install(
    stub: CommandServiceStub, kit: SigningKit, deployment_id: str, served: StubObject
) -> None:
    """Queue DownloadBundle and Install of the object ``served``; both succeed."""
    ids = queue_deployment(
        stub,
        deployment_id,
        kit.sign(s3_spec(deployment_id, served.key, ETag=served.etag)),
        commands=("DownloadBundle", "Install"),
    )
    reports = _run_to_completion(stub, ids)
    assert [r["CommandStatus"] for r in reports] == ["Succeeded", "Succeeded"], reports


def test_the_daemon_reaches_both_services_through_its_proxy_naming_itself_alike(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    bundle = tgz_revision(tmp_path / "trace.log", tmp_path / "www", "proxied", HOOKED)
    served = StubObject(BUCKET, "app.tgz", bundle)
    with stub_s3_server(served) as endpoint, ForwardingProxy() as proxy:
        daemon = s3_daemon(tmp_path, stub, kit, endpoint)
        with daemon.config.open("a", encoding="utf-8") as config:
            config.write(f":proxy_uri: '{proxy.url}'\n")
        _download_and_install(daemon, stub, kit, "d-S3PROXY01", served)
        seen = list(proxy.seen)
    assert (tmp_path / "www" / "index.html").read_text(encoding="utf-8") == "proxied\n"
    # Both services were reached through the configured proxy, and only through it.
    through_proxy = [(method, url.split("?")[0]) for method, url, _ in seen]
    assert through_proxy.count(("POST", f"{stub.url}/")) == len(stub.requests)
    assert ("HEAD", f"{endpoint}/{BUCKET}/app.tgz") in through_proxy
    assert ("GET", f"{endpoint}/{BUCKET}/app.tgz") in through_proxy
    assert len(through_proxy) == len(stub.requests) + len(served.requests)
    # Each request named the agent and its version, in one and the same User-Agent (but
    # for the features botocore saw a request use, its own business).
    user_agents = {user_agent for *_, user_agent in seen}
    user_agents |= {request.headers["user-agent"] for request in stub.requests}
    user_agents |= {headers["User-Agent"] for *_, headers in served.requests}
    user_agents = {without_feature_ids(user_agent) for user_agent in user_agents}
    assert len(user_agents) == 1, user_agents
    assert user_agents.pop().endswith(f" codedeploy-agent-py/{__version__}")
