"""The ``ongoing-deployment`` records: which command was running when the agent died.

While a command runs, ``<root_dir>/<ongoing_deployment_tracking>/<deployment-id>`` holds
its host command id, as the AWS agent keeps it (docs/behaviour.md section 4). A record still there at
start-up means the agent stopped in the middle of that command; the poll loop reports
such commands as failed (``FailedAfterRestart``) when the record is recent, and clears them.
Beside it, ``.<deployment-id>.hook-cgroup`` names the cgroup of the script running now (the
leading dot keeps it out of the records); at start-up the daemon (and ``codedeploy-local``) ends and
removes every cgroup so named whose agent is gone, so that a crash leaves no hook running.
Every function here reads or writes the deployment root, as its name says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from agent.deployment_root.layout import DeploymentRoot
from agent.errors import AgentError
from agent.host_command.engine_settings import EngineSettings
from agent.lifecycle_event.process_tree import end_recorded_hook_cgroup_on_disk

_HOOK_CGROUP_SUFFIX = ".hook-cgroup"

# A record older than this is too old to report: the service has given up on it anyway.
RECORD_MAX_AGE_SECONDS = 24 * 60 * 60


class OngoingRecordError(AgentError):
    """An ongoing-deployment record cannot be written."""


@dataclass(frozen=True)
class OngoingRecord:
    """One record: the deployment it names, the host command id it holds, and its age."""

    path: Path
    deployment_id: str
    host_command_identifier: str
    age_seconds: float

    @property
    def is_recent(self) -> bool:
        return self.age_seconds < RECORD_MAX_AGE_SECONDS


def _record_path(root: DeploymentRoot, deployment_id: str) -> Path:
    if not deployment_id or "/" in deployment_id or deployment_id in (".", ".."):
        raise OngoingRecordError(f"deployment id {deployment_id[:80]!r} cannot name a file")
    return root.ongoing_dir / deployment_id


def hook_cgroup_record_path(root: DeploymentRoot, deployment_id: str) -> Path:
    """Where the cgroup of ``deployment_id``'s running script is named (nothing is written)."""
    record = _record_path(root, deployment_id)
    return record.with_name(f".{record.name}{_HOOK_CGROUP_SUFFIX}")


def engine_naming_hook_cgroups(engine: EngineSettings, deployment_id: str) -> EngineSettings:
    """The engine settings of ``deployment_id``: its scripts' cgroups are named beside its
    record, so that the next start of an agent can end what a crash leaves in them."""
    record = hook_cgroup_record_path(engine.root, deployment_id)
    hooks = dataclasses.replace(engine.hook_settings, cgroup_record_file=record)
    return dataclasses.replace(engine, hook_settings=hooks)


def end_hook_cgroups_left_on_disk(root: DeploymentRoot) -> List[Path]:
    """End and remove every hook cgroup that an agent gone since left named; their paths.

    A cgroup whose recording process still runs (another ``codedeploy-local`` on the same
    deployment root) is left alone.
    """
    folder = root.ongoing_dir
    if not folder.is_dir():
        return []
    ended: List[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") and path.name.endswith(_HOOK_CGROUP_SUFFIX):
            cgroup = end_recorded_hook_cgroup_on_disk(path)
            if cgroup is not None:
                ended.append(cgroup)
    return ended


def write_ongoing_record_to_disk(
    root: DeploymentRoot, deployment_id: str, host_command_identifier: str
) -> Path:
    """Record that ``host_command_identifier`` of ``deployment_id`` is running now."""
    path = _record_path(root, deployment_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(host_command_identifier, encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        raise OngoingRecordError(
            f"cannot write the ongoing-deployment record {path}: {error.strerror or error}"
        ) from None
    return path


def remove_ongoing_record_from_disk(root: DeploymentRoot, deployment_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(root, deployment_id).unlink()


def read_ongoing_records_from_disk(
    root: DeploymentRoot, *, now: Optional[float] = None
) -> List[OngoingRecord]:
    """The records left in the folder, oldest first (none when the folder is missing)."""
    folder = root.ongoing_dir
    if not folder.is_dir():
        return []
    moment = time.time() if now is None else now
    records: List[OngoingRecord] = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            modified = path.stat().st_mtime
        except OSError:
            continue
        records.append(OngoingRecord(path, path.name, text, max(0.0, moment - modified)))
    records.sort(key=lambda record: -record.age_seconds)
    return records


def clear_ongoing_record_files(records: List[OngoingRecord]) -> None:
    for record in records:
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
