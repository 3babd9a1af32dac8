"""Which revision's scripts each event runs, and the hook environment."""

from __future__ import annotations

from pathlib import Path

from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    LocalRevision,
    S3Revision,
)
from agent.lifecycle_event.hook_environment import hook_environment
from agent.lifecycle_event.script_source import script_source_dir


def _spec(**overrides: object) -> DeploymentSpecification:
    fields: dict = dict(
        deployment_id="d-NEW",
        deployment_group_id="g",
        deployment_group_name="web",
        application_name="shop",
        revision=LocalRevision(Path("/srv/rev"), BundleType.DIRECTORY),
    )
    fields.update(overrides)
    return DeploymentSpecification(**fields)


def test_application_stop_uses_the_last_successful_revision_until_the_new_one_is_unpacked(
    tmp_path: Path,
) -> None:
    root = DeploymentRoot(tmp_path)
    spec = _spec()
    current = root.deployment_dir("g", "d-NEW")
    previous = root.deployment_dir("g", "d-OLD")
    # First deployment of the group: no previous revision at all.
    assert script_source_dir("ApplicationStop", spec, current, root) is None
    root.write_last_successful_marker("g", previous)
    assert script_source_dir("ApplicationStop", spec, current, root) == previous
    assert script_source_dir("BeforeBlockTraffic", spec, current, root) == previous
    assert script_source_dir("BeforeInstall", spec, current, root) == current
    current.archive.mkdir(parents=True)
    assert script_source_dir("ApplicationStop", spec, current, root) == current


def test_blue_green_rollback_uses_most_recent_and_last_successful(tmp_path: Path) -> None:
    root = DeploymentRoot(tmp_path)
    spec = _spec(deployment_creator="codeDeployRollback", deployment_type="BLUE_GREEN")
    current = root.deployment_dir("g", "d-NEW")
    recent, good = root.deployment_dir("g", "d-RECENT"), root.deployment_dir("g", "d-GOOD")
    root.write_most_recent_marker("g", recent)
    root.write_last_successful_marker("g", good)
    assert script_source_dir("BeforeBlockTraffic", spec, current, root) == recent
    assert script_source_dir("AfterBlockTraffic", spec, current, root) == recent
    assert script_source_dir("BeforeAllowTraffic", spec, current, root) == good
    assert script_source_dir("AfterAllowTraffic", spec, current, root) == good
    assert script_source_dir("ValidateService", spec, current, root) == current


def test_hook_environment_adds_the_contract_variables() -> None:
    spec = _spec(revision=S3Revision("bucket", "app.tgz", BundleType.TGZ, "v3", "etag"))
    env = hook_environment("AfterInstall", spec, {"PATH": "/usr/bin", "DEPLOYMENT_ID": "stale"})
    assert env == {
        "PATH": "/usr/bin",
        "LIFECYCLE_EVENT": "AfterInstall",
        "DEPLOYMENT_ID": "d-NEW",
        "APPLICATION_NAME": "shop",
        "DEPLOYMENT_GROUP_NAME": "web",
        "DEPLOYMENT_GROUP_ID": "g",
        "BUNDLE_BUCKET": "bucket",
        "BUNDLE_KEY": "app.tgz",
        "BUNDLE_VERSION": "v3",
        "BUNDLE_ETAG": "etag",
    }
