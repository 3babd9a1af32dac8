"""One rule for the events a deployment names and the appspec's hooks, whoever names them
(the service's event list, ``codedeploy-local --events``), and one appspec name fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.application_specification.model import AppSpecError, appspec_file_names
from agent.application_specification.parser import (
    check_deployment_events,
    parse_application_specification,
)
from agent.deployment_specification.model import (
    BundleType,
    DeploymentSpecification,
    LocalRevision,
)

APPSPEC = """\
version: 0.0
os: linux
hooks:
  Smoke:
    - location: smoke.sh
"""


def test_a_custom_event_without_hooks_is_refused_naming_who_named_it() -> None:
    appspec = parse_application_specification(APPSPEC)
    with pytest.raises(AppSpecError) as caught:
        check_deployment_events(appspec, ("Smoke", "Nope"), named_by="--events")
    assert caught.value.message == (
        "--events names Nope as custom lifecycle events, but appspec.yml has no hooks for them"
    )
    check_deployment_events(appspec, ("Smoke",))
    with pytest.raises(AppSpecError, match=r"hooks\.Smoke is neither"):
        check_deployment_events(appspec, ())


def test_the_custom_events_of_a_deployment_are_its_non_standard_ones_in_order() -> None:
    spec = DeploymentSpecification(
        deployment_id="d-1",
        deployment_group_id="g",
        deployment_group_name="web",
        application_name="shop",
        revision=LocalRevision(Path("/srv/rev"), BundleType.DIRECTORY),
        all_possible_lifecycle_events=("BeforeInstall", "Warm", "Install", "Smoke", "Warm"),
    )
    assert spec.custom_lifecycle_events == ("Warm", "Smoke")


def test_only_the_default_appspec_name_falls_back_to_yaml() -> None:
    assert appspec_file_names("appspec.yml") == ("appspec.yml", "appspec.yaml")
    assert appspec_file_names("deploy/spec.yml") == ("deploy/spec.yml",)
