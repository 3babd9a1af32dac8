"""codedeploy-local flag validation and the --events ordering rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agent.deployment_specification.model import (
    BundleType,
    GitHubRevision,
    LocalRevision,
    S3Revision,
)
from agent.event_names import DEFAULT_LOCAL_EVENTS
from agent.local_deployment.request import (
    LocalUsageError,
    build_local_request,
    new_local_deployment_id,
    order_events,
    parse_bundle_location,
)


def test_local_deployment_ids_look_like_the_aws_ones() -> None:
    ids = {new_local_deployment_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"d-[A-Z0-9]{9}-local", i) for i in ids)


def test_default_order() -> None:
    assert order_events([]) == DEFAULT_LOCAL_EVENTS
    assert DEFAULT_LOCAL_EVENTS[:4] == (
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
        "DownloadBundle",
    )


def test_required_events_are_prepended_when_omitted() -> None:
    assert order_events(["ApplicationStart", "MyCheck"]) == (
        "DownloadBundle",
        "Install",
        "ApplicationStart",
        "MyCheck",
    )
    assert order_events(["Install", "AfterInstall"]) == (
        "DownloadBundle",
        "Install",
        "AfterInstall",
    )


def test_named_order_is_kept_when_it_is_allowed() -> None:
    named = [
        "ApplicationStop",
        "MyPre",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "MyPost",
    ]
    assert order_events(named) == tuple(named)
    # BeforeInstall may even come before DownloadBundle.
    assert order_events(["BeforeInstall", "DownloadBundle", "Install"])[0] == "BeforeInstall"


@pytest.mark.parametrize(
    ("named", "event", "before"),
    [
        (["AfterInstall", "DownloadBundle", "Install"], "AfterInstall", "DownloadBundle"),
        (["DownloadBundle", "ApplicationStart", "Install"], "ApplicationStart", "Install"),
        (["Install", "DownloadBundle"], "Install", "DownloadBundle"),
        (["DownloadBundle", "ValidateService", "Install"], "ValidateService", "Install"),
    ],
)
def test_wrong_order_is_a_clear_error_naming_allowed_events(
    named: Any, event: str, before: str
) -> None:
    with pytest.raises(LocalUsageError) as raised:
        order_events(named)
    message = str(raised.value)
    assert f"runs {event} before {before}" in message
    assert "ApplicationStop" in message and "BeforeInstall" in message


def test_a_missing_step_is_added_beside_the_named_one() -> None:
    # Install right after a named DownloadBundle, DownloadBundle right before a named Install.
    assert order_events(["DownloadBundle", "ApplicationStart"]) == (
        "DownloadBundle",
        "Install",
        "ApplicationStart",
    )
    assert order_events(["ApplicationStop", "MyPre", "Install", "AfterInstall"]) == (
        "ApplicationStop",
        "MyPre",
        "DownloadBundle",
        "Install",
        "AfterInstall",
    )
    # BeforeInstall written next to the named step keeps its standard place.
    assert order_events(["DownloadBundle", "BeforeInstall", "AfterInstall"]) == (
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
    )
    assert order_events(["BeforeInstall", "Install", "ValidateService"]) == (
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "ValidateService",
    )


def test_only_the_written_order_is_checked() -> None:
    # Standard events in any order among themselves, as the AWS utility allows.
    assert order_events(["ApplicationStart", "ApplicationStop"]) == (
        "DownloadBundle",
        "Install",
        "ApplicationStart",
        "ApplicationStop",
    )
    with pytest.raises(LocalUsageError, match="runs ApplicationStart before DownloadBundle"):
        order_events(["ApplicationStart", "DownloadBundle"])
    with pytest.raises(LocalUsageError, match="runs ValidateService before Install"):
        order_events(["ValidateService", "Install"])


def test_events_named_twice_run_twice() -> None:
    assert order_events(["ApplicationStart", "MyCheck", "ApplicationStart"]) == (
        "DownloadBundle",
        "Install",
        "ApplicationStart",
        "MyCheck",
        "ApplicationStart",
    )


def test_locations(tmp_path: Path) -> None:
    bundle = tmp_path / "app.tgz"
    bundle.write_bytes(b"x")
    assert parse_bundle_location(str(bundle), BundleType.TGZ) == LocalRevision(
        bundle, BundleType.TGZ
    )
    assert parse_bundle_location(f"file://{tmp_path}", BundleType.DIRECTORY) == LocalRevision(
        tmp_path, BundleType.DIRECTORY
    )
    s3 = parse_bundle_location("s3://bucket/path/app.zip?versionId=v1&etag=e2", BundleType.ZIP)
    assert s3 == S3Revision("bucket", "path/app.zip", BundleType.ZIP, "v1", "e2")
    github = parse_bundle_location(
        "https://api.github.com/repos/own/repo/zipball/abc123", BundleType.DIRECTORY
    )
    assert github == GitHubRevision("own", "repo", "abc123", BundleType.ZIP)
    assert parse_bundle_location(
        "https://github.com/own/repo", BundleType.DIRECTORY
    ) == GitHubRevision("own", "repo", "HEAD", BundleType.TAR)


@pytest.mark.parametrize(
    ("location", "kind", "message"),
    [
        ("http://example.com/app.tgz", BundleType.TGZ, "http://"),
        ("/does/not/exist", BundleType.DIRECTORY, "does not exist"),
        ("s3://bucket", BundleType.TGZ, "s3://bucket/key"),
        ("s3://bucket/key", BundleType.DIRECTORY, "--type tar, tgz or zip"),
        ("https://example.com/x", BundleType.TGZ, "not a GitHub location"),
        ("ftp://host/x", BundleType.TGZ, "neither a local path"),
    ],
)
def test_bad_locations(location: str, kind: BundleType, message: str) -> None:
    with pytest.raises(LocalUsageError, match=re.escape(message)):
        parse_bundle_location(location, kind)


def test_a_file_is_not_a_directory_bundle_and_vice_versa(tmp_path: Path) -> None:
    bundle = tmp_path / "app.tar"
    bundle.write_bytes(b"x")
    with pytest.raises(LocalUsageError, match="is not a folder"):
        parse_bundle_location(str(bundle), BundleType.DIRECTORY)
    with pytest.raises(LocalUsageError, match="is not a file"):
        parse_bundle_location(str(tmp_path), BundleType.TAR)


def _request(tmp_path: Path, **overrides: Any) -> Any:
    arguments = dict(
        bundle_location=str(tmp_path),
        bundle_type="directory",
        file_exists_behavior="DISALLOW",
        deployment_group_id="default-local-deployment-group",
        deployment_group_name="LocalFleet",
        application_name=None,
        events_text=None,
        appspec_filename="appspec.yml",
    )
    arguments.update(overrides)
    return build_local_request(**arguments)


def test_build_request_defaults(tmp_path: Path) -> None:
    request = _request(
        tmp_path, file_exists_behavior="retain", events_text="ApplicationStart, Smoke"
    )
    assert request.spec.application_name == str(tmp_path)
    assert request.spec.file_exists_behavior.value == "RETAIN"
    assert request.commands == ("DownloadBundle", "Install", "ApplicationStart", "Smoke")
    assert request.custom_events == ("Smoke",)
    assert request.spec.all_possible_lifecycle_events == request.commands


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"bundle_type": "rar"}, "--type rar"),
        ({"file_exists_behavior": "MERGE"}, "--file-exists-behavior MERGE"),
        ({"events_text": "ApplicationStart,,X"}, "empty event name"),
        ({"events_text": "AllowTraffic"}, "takes no scripts"),
        ({"events_text": "bad name!"}, "not a lifecycle event name"),
        ({"deployment_group_id": "../etc"}, "--deployment-group"),
        ({"appspec_filename": "../appspec.yml"}, "--appspec-filename"),
        ({"deployment_group_id": "g" * 300}, "--deployment-group"),
        ({"deployment_group_id": "deployment-instructions"}, "root's own folders"),
        ({"deployment_group_id": "deployment-logs"}, "root's own folders"),
        ({"deployment_group_id": "ongoing-deployment"}, "root's own folders"),
        ({"deployment_group_id": "my-tracking"}, "root's own folders"),
        ({"deployment_group_id": "a\nb"}, "--deployment-group 'a\\nb'"),
        ({"deployment_group_id": "a\x1b[2Jb"}, "--deployment-group"),
        ({"deployment_group_id": ".hidden"}, "not starting with a dot"),
        ({"deployment_group_id": "a b"}, "--deployment-group"),
        ({"deployment_group_name": "web\nFAKE LINE"}, "--deployment-group-name"),
        ({"deployment_group_name": "w" * 1025}, "--deployment-group-name"),
        ({"application_name": "shop\r"}, "--application-name"),
        ({"appspec_filename": "a" * 256}, "--appspec-filename"),
        ({"appspec_filename": "app\nspec.yml"}, "--appspec-filename"),
        ({"events_text": "E" * 101}, "not a lifecycle event name"),
        ({"events_text": ",".join(f"E{n}" for n in range(101))}, "at most 100"),
    ],
)
def test_bad_flags(tmp_path: Path, overrides: Any, flag: str) -> None:
    with pytest.raises(LocalUsageError, match=re.escape(flag)) as raised:
        _request(tmp_path, reserved_root_names=("my-tracking",), **overrides)
    assert raised.value.message.isprintable()
    assert len(raised.value.message) < 300


def test_ids_as_aws_makes_them_are_accepted(tmp_path: Path) -> None:
    for group in ("default-local-deployment-group", "2a3b4c5d-6e7f-8091-a2b3-c4d5e6f70819"):
        assert _request(tmp_path, deployment_group_id=group).spec.deployment_group_id == group
    assert _request(tmp_path, deployment_group_id="g" * 100).spec.deployment_group_id
