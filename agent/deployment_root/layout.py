"""Where everything lives under ``root_dir``, laid out exactly as the AWS agent does.

A host can switch between the AWS agent and this one and keep its history, so these
names are part of the contract (docs/behaviour.md section 4). Only paths are computed here; the
functions that read or write the markers say so in their names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

INSTRUCTIONS_DIR = "deployment-instructions"
DEPLOYMENT_LOGS_DIR = "deployment-logs"
DEPLOYMENTS_LOG_NAME = "codedeploy-agent-deployments.log"
ARCHIVE_DIR = "deployment-archive"
BUNDLE_NAME = "bundle.tar"
SCRIPT_LOG = Path("logs") / "scripts.log"


@dataclass(frozen=True)
class DeploymentRoot:
    """The deployment root (``root_dir``) and the names of everything under it."""

    path: Path
    ongoing_deployment_tracking: str = "ongoing-deployment"

    @property
    def instructions_dir(self) -> Path:
        return self.path / INSTRUCTIONS_DIR

    @property
    def deployments_log(self) -> Path:
        return self.path / DEPLOYMENT_LOGS_DIR / DEPLOYMENTS_LOG_NAME

    @property
    def ongoing_dir(self) -> Path:
        return self.path / self.ongoing_deployment_tracking

    def group_dir(self, group_id: str) -> Path:
        return self.path / group_id

    def deployment_dir(self, group_id: str, deployment_id: str) -> DeploymentDir:
        return DeploymentDir(self.path / group_id / deployment_id)

    def cleanup_file(self, group_id: str) -> Path:
        return self.instructions_dir / f"{group_id}-cleanup"

    def install_instructions_file(self, group_id: str) -> Path:
        return self.instructions_dir / f"{group_id}-install.json"

    def last_successful_marker(self, group_id: str) -> Path:
        return self.instructions_dir / f"{group_id}_last_successful_install"

    def most_recent_marker(self, group_id: str) -> Path:
        return self.instructions_dir / f"{group_id}_most_recent_install"

    def read_last_successful_deployment_dir(self, group_id: str) -> Optional[DeploymentDir]:
        return _read_marker(self.last_successful_marker(group_id))

    def read_most_recent_deployment_dir(self, group_id: str) -> Optional[DeploymentDir]:
        return _read_marker(self.most_recent_marker(group_id))

    def write_last_successful_marker(self, group_id: str, deployment: DeploymentDir) -> None:
        _write_marker(self.last_successful_marker(group_id), deployment.path)

    def write_most_recent_marker(self, group_id: str, deployment: DeploymentDir) -> None:
        _write_marker(self.most_recent_marker(group_id), deployment.path)


@dataclass(frozen=True)
class DeploymentDir:
    """One deployment's folder: ``<root>/<group-id>/<deployment-id>``."""

    path: Path

    @property
    def bundle(self) -> Path:
        return self.path / BUNDLE_NAME

    @property
    def archive(self) -> Path:
        return self.path / ARCHIVE_DIR

    @property
    def script_log(self) -> Path:
        return self.path / SCRIPT_LOG


def _read_marker(marker: Path) -> Optional[DeploymentDir]:
    """The folder a marker names, or None when there is no marker (or it is empty)."""
    try:
        text = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return DeploymentDir(Path(text)) if text else None


def _write_marker(marker: Path, deployment_dir: Path) -> None:
    # Written beside and renamed over, so a crash never leaves a half-written marker.
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(str(deployment_dir), encoding="utf-8")
    partial.replace(marker)
