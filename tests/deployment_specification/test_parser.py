"""Deployment specification JSON: required fields, revision kinds, defaults, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict

import pytest

from agent.application_specification.model import FileExistsBehavior
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecError,
    GitHubRevision,
    LocalRevision,
    S3Revision,
)
from agent.deployment_specification.parser import parse_deployment_specification


def _spec(**overrides: Any) -> str:
    document: Dict[str, Any] = {
        "DeploymentId": "arn:aws:codedeploy:us-east-1:123456789012:deployment/d-ABCDEFGHI",
        "DeploymentGroupId": "2a3b4c5d-group",
        "DeploymentGroupName": "web",
        "ApplicationName": "shop",
        "Revision": {
            "RevisionType": "S3",
            "S3Revision": {"Bucket": "b", "Key": "k/app.tgz", "BundleType": "tgz", "ETag": '"e1"'},
        },
    }
    document.update(overrides)
    return json.dumps(document)


def test_s3_specification_with_defaults() -> None:
    spec = parse_deployment_specification(_spec())
    assert spec.deployment_id == "d-ABCDEFGHI"
    assert spec.deployment_creator == "user"
    assert spec.deployment_type == "IN_PLACE"
    assert spec.appspec_filename == "appspec.yml"
    assert spec.file_exists_behavior is FileExistsBehavior.DISALLOW
    assert spec.revision == S3Revision("b", "k/app.tgz", BundleType.TGZ, None, '"e1"')
    assert spec.revision.hook_environment()["BUNDLE_KEY"] == "k/app.tgz"


def test_overrides_and_lifecycle_events() -> None:
    spec = parse_deployment_specification(
        _spec(
            AgentActionOverrides={"AgentOverrides": {"FileExistsBehavior": "overwrite"}},
            AllPossibleLifecycleEvents=["ApplicationStop", "DownloadBundle", "Install"],
            AppSpecFilename="deploy.yml",
            DeploymentCreator="codeDeployRollback",
            DeploymentType="BLUE_GREEN",
        )
    )
    assert spec.file_exists_behavior is FileExistsBehavior.OVERWRITE
    assert spec.all_possible_lifecycle_events == ("ApplicationStop", "DownloadBundle", "Install")
    assert spec.appspec_filename == "deploy.yml"
    assert spec.is_blue_green_rollback


def test_github_token_is_kept_but_never_shown() -> None:
    spec = parse_deployment_specification(
        _spec(
            Revision={
                "RevisionType": "GitHub",
                "GitHubRevision": {"Account": "o", "Repository": "r", "CommitId": "abc"},
            },
            GitHubAccessToken="ghp_secret",
        )
    )
    assert isinstance(spec.revision, GitHubRevision)
    assert spec.revision.access_token == "ghp_secret"
    assert "ghp_secret" not in repr(spec)
    assert spec.revision.hook_environment() == {"BUNDLE_COMMIT": "abc"}


def test_local_revisions() -> None:
    spec = parse_deployment_specification(
        _spec(
            Revision={
                "RevisionType": "Local Directory",
                "LocalRevision": {"Location": "/srv/rev", "BundleType": "directory"},
            }
        )
    )
    assert spec.revision == LocalRevision(Path("/srv/rev"), BundleType.DIRECTORY)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DeploymentGroupId": ""}, "DeploymentGroupId"),
        ({"ApplicationName": None}, "ApplicationName"),
        ({"Revision": {"RevisionType": "FTP"}}, "RevisionType"),
        (
            {
                "Revision": {
                    "RevisionType": "S3",
                    "S3Revision": {"Bucket": "b", "Key": "k", "BundleType": "rar"},
                }
            },
            "BundleType",
        ),
        (
            {
                "Revision": {
                    "RevisionType": "Local File",
                    "LocalRevision": {"Location": "/x", "BundleType": "directory"},
                }
            },
            "BundleType",
        ),
        (
            {"AgentActionOverrides": {"AgentOverrides": {"FileExistsBehavior": "MERGE"}}},
            "FileExistsBehavior",
        ),
        ({"AllPossibleLifecycleEvents": "Install"}, "AllPossibleLifecycleEvents"),
        ({"AllPossibleLifecycleEvents": ["Install", "a\nb"]}, "AllPossibleLifecycleEvents"),
        ({"AllPossibleLifecycleEvents": ["E" * 101]}, "AllPossibleLifecycleEvents"),
        ({"DeploymentGroupId": "g" * 300}, "DeploymentGroupId 'ggg"),
        ({"DeploymentGroupId": "deployment-instructions"}, "DeploymentGroupId"),
        ({"DeploymentGroupId": "deployment-logs"}, "DeploymentGroupId"),
        ({"DeploymentGroupId": "ongoing-deployment"}, "DeploymentGroupId"),
        ({"DeploymentGroupId": "a\nb"}, "DeploymentGroupId"),
        ({"DeploymentGroupId": ".."}, "DeploymentGroupId"),
        ({"DeploymentGroupId": "../../etc"}, "DeploymentGroupId"),
        ({"DeploymentId": "d-ABC/../../x"}, "DeploymentId"),
        ({"DeploymentId": "d-\u0000"}, "DeploymentId"),
        ({"DeploymentId": "d-" + "X" * 200}, "DeploymentId"),
        ({"DeploymentGroupName": "web\u001b[2J"}, "DeploymentGroupName"),
        ({"ApplicationName": "shop\nfake log line"}, "ApplicationName"),
        ({"AppSpecFilename": "../appspec.yml"}, "AppSpecFilename"),
        ({"AppSpecFilename": "a" * 300}, "AppSpecFilename"),
        (
            {
                "Revision": {
                    "RevisionType": "S3",
                    "S3Revision": {"Bucket": "b", "Key": "k\u0000", "BundleType": "tgz"},
                }
            },
            "S3Revision.Key",
        ),
    ],
)
def test_bad_fields_are_named(overrides: Dict[str, Any], named: str) -> None:
    with pytest.raises(DeploymentSpecError, match=re.escape(named)) as raised:
        parse_deployment_specification(_spec(**overrides))
    assert raised.value.message.isprintable()
    assert len(raised.value.message) < 300


def test_not_json() -> None:
    with pytest.raises(DeploymentSpecError, match="not valid JSON"):
        parse_deployment_specification("{nope")
