"""DownloadBundle's own part, with the engine's fetcher in process: what the command does
with the revision it is handed, whatever its source.

The sources themselves are shown in ``tests/revision/`` against real files and servers;
here an S3 revision is "fetched" by the in-process fetcher, so no S3 server is needed to
show that the revision lands in the deployment's folder, that its appspec is checked
before the group's most-recent marker names the deployment, and that a fetch that fails
changes no marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.application_specification.parser import AppSpecError
from agent.deployment_root.layout import DeploymentRoot
from agent.deployment_specification.model import BundleType, DeploymentSpecification, S3Revision
from agent.host_command.dispatch import execute_host_command
from agent.host_command.engine_settings import EngineSettings
from agent.revision.errors import RevisionSourceError
from tests.support.fake_revision_fetcher import FakeRevisionFetcher

GROUP = "group-1"
REVISION = S3Revision("bundles", "app.tgz", BundleType.TGZ, version="v1", etag="e1")
APPSPEC = (
    "version: 0.0\nos: linux\nhooks:\n  Smoke:\n    - location: smoke.sh\n"
    "  AfterInstall:\n    - location: smoke.sh\n"
)


def _spec(deployment_id: str, *events: str) -> DeploymentSpecification:
    return DeploymentSpecification(
        deployment_id=deployment_id,
        deployment_group_id=GROUP,
        deployment_group_name="group-name",
        application_name="app",
        revision=REVISION,
        all_possible_lifecycle_events=events or None,
    )


def _settings(tmp_path: Path, fetcher: FakeRevisionFetcher) -> EngineSettings:
    return EngineSettings(root=DeploymentRoot(tmp_path / "root"), revision_fetcher=fetcher)


def test_the_revision_comes_from_the_engine_s_fetcher_and_the_marker_names_it(
    tmp_path: Path,
) -> None:
    fetcher = FakeRevisionFetcher({"appspec.yml": APPSPEC, "smoke.sh": "#!/bin/sh\n"})
    settings = _settings(tmp_path, fetcher)
    spec = _spec("d-FETCHED01", "DownloadBundle", "Smoke", "AfterInstall")
    assert execute_host_command("DownloadBundle", spec, settings) == ""
    [call] = fetcher.calls
    assert call.revision == REVISION and call.appspec_filename == "appspec.yml"
    assert call.deployment.path == settings.root.path / GROUP / "d-FETCHED01"
    assert (call.deployment.archive / "appspec.yml").read_text(encoding="utf-8") == APPSPEC
    marked = settings.root.read_most_recent_deployment_dir(GROUP)
    assert marked is not None and marked.path == call.deployment.path


def test_an_appspec_without_the_deployment_s_custom_events_moves_no_marker(
    tmp_path: Path,
) -> None:
    first = FakeRevisionFetcher({"appspec.yml": APPSPEC, "smoke.sh": "#!/bin/sh\n"})
    settings = _settings(tmp_path, first)
    execute_host_command("DownloadBundle", _spec("d-FIRST0001", "Smoke"), settings)
    before = settings.root.read_most_recent_deployment_dir(GROUP)

    lacking = FakeRevisionFetcher({"appspec.yml": "version: 0.0\nos: linux\n"})
    settings = _settings(tmp_path, lacking)
    with pytest.raises(AppSpecError, match="names Smoke as custom lifecycle events"):
        execute_host_command("DownloadBundle", _spec("d-LACKING01", "Smoke"), settings)
    assert len(lacking.calls) == 1
    assert settings.root.read_most_recent_deployment_dir(GROUP) == before


def test_a_fetch_that_fails_raises_its_own_error_and_moves_no_marker(tmp_path: Path) -> None:
    refused = RevisionSourceError("s3://bundles/app.tgz: access denied")
    settings = _settings(tmp_path, FakeRevisionFetcher(error=refused))
    with pytest.raises(RevisionSourceError) as raised:
        execute_host_command("DownloadBundle", _spec("d-REFUSED01"), settings)
    assert raised.value is refused
    assert settings.root.read_most_recent_deployment_dir(GROUP) is None
    assert not (settings.root.path / GROUP / "d-REFUSED01" / "deployment-archive").exists()
