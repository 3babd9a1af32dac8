"""Reading the new revision's appspec out of a bundle before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.application_specification.model import AppSpecError
from agent.deployment_specification.model import BundleType, LocalRevision
from agent.host_command.bundle import BundleError
from agent.local_deployment.appspec_preview import preview_application_specification
from tests.support import make_bundle, write_tree

APPSPEC = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: {where}\n"


@pytest.mark.parametrize("kind", ["tgz", "tar", "zip"])
def test_top_level_appspec(tmp_path: Path, kind: str) -> None:
    source = write_tree(
        tmp_path / "rev", {"appspec.yml": APPSPEC.format(where="top.sh"), "a/b.txt": "x"}
    )
    bundle = make_bundle(source, tmp_path / f"b.{kind}", kind)
    spec = preview_application_specification(LocalRevision(bundle, BundleType(kind)), "appspec.yml")
    assert spec.scripts_for("ApplicationStart")[0].location == "top.sh"


def test_single_top_folder_holding_the_appspec(tmp_path: Path) -> None:
    source = write_tree(
        tmp_path / "rev", {"project/appspec.yaml": APPSPEC.format(where="nested.sh")}
    )
    bundle = make_bundle(source, tmp_path / "b.tgz", "tgz")
    spec = preview_application_specification(LocalRevision(bundle, BundleType.TGZ), "appspec.yml")
    assert spec.scripts_for("ApplicationStart")[0].location == "nested.sh"


def test_nested_appspec_does_not_count_beside_other_top_level_entries(tmp_path: Path) -> None:
    source = write_tree(
        tmp_path / "rev", {"project/appspec.yml": APPSPEC.format(where="x"), "other.txt": ""}
    )
    bundle = make_bundle(source, tmp_path / "b.tgz", "tgz")
    with pytest.raises(
        AppSpecError, match=r"has no appspec\.yml or appspec\.yaml at its top level"
    ):
        preview_application_specification(LocalRevision(bundle, BundleType.TGZ), "appspec.yml")


def test_custom_name_and_broken_archive(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "rev", {"deploy.yml": APPSPEC.format(where="c.sh")})
    bundle = make_bundle(source, tmp_path / "b.zip", "zip")
    spec = preview_application_specification(LocalRevision(bundle, BundleType.ZIP), "deploy.yml")
    assert spec.scripts_for("ApplicationStart")[0].location == "c.sh"
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(BundleError, match="cannot be read as a tgz archive"):
        preview_application_specification(LocalRevision(garbage, BundleType.TGZ), "appspec.yml")


def test_invalid_appspec_in_bundle_names_the_field(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "rev", {"appspec.yml": "version: 1.0\nos: linux\n"})
    bundle = make_bundle(source, tmp_path / "b.tar", "tar")
    with pytest.raises(AppSpecError, match="version"):
        preview_application_specification(LocalRevision(bundle, BundleType.TAR), "appspec.yml")
