"""The command of one lifecycle event: its scripts run from the revision that supplies them.

Which revision that is (:mod:`agent.lifecycle_event.script_source`), the scripts'
environment (:mod:`agent.lifecycle_event.hook_environment`) and how they run
(:mod:`agent.lifecycle_event.runner`) are the lifecycle events' own policy; this command
reads the appspec, opens the script log and reports the log's tail. The daemon parses an
appspec once: the reading made for the no-op check before the acknowledgement serves the
run after it, and the later commands of the deployment (which read the same revision's
appspec), as long as the file is the same one, unchanged (:class:`RecentAppspecs`).
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, OrderedDict, Tuple

import structlog

from agent.application_specification.model import ApplicationSpecification
from agent.application_specification.parser import (
    find_application_specification_file,
    read_application_specification,
)
from agent.deployment_root.layout import DeploymentDir
from agent.deployment_specification.model import DeploymentSpecification
from agent.errors import AgentError
from agent.host_command.deployment_folder import check_names_fit_the_root, deployment_dir_of
from agent.host_command.engine_settings import EngineSettings
from agent.lifecycle_event.hook_environment import hook_environment
from agent.lifecycle_event.runner import run_event_scripts
from agent.lifecycle_event.script_log import open_script_log
from agent.lifecycle_event.script_source import script_source_dir

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AppspecReading:
    """An appspec as parsed, with the identity of its file when it was read (inode, size,
    modification and change times): while the file still has it, the parse stands."""

    path: Path
    stamp: Tuple[int, int, int, int]
    appspec: ApplicationSpecification


def _stamp_on_disk(path: Path) -> Tuple[int, int, int, int]:
    status = os.stat(path)
    return (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class RecentAppspecs:
    """The last few appspec readings, by file: each is reused while its file keeps the
    identity it had when it was read; past ``capacity`` files the oldest goes."""

    def __init__(self, capacity: int = 8) -> None:
        self._capacity = max(1, capacity)
        self._readings: OrderedDict[Path, AppspecReading] = collections.OrderedDict()
        self._lock = threading.Lock()

    def recall(self, path: Path, stamp: Tuple[int, int, int, int]) -> Optional[AppspecReading]:
        with self._lock:
            reading = self._readings.get(path)
            return reading if reading is not None and reading.stamp == stamp else None

    def keep(self, reading: AppspecReading) -> None:
        with self._lock:
            self._readings[reading.path] = reading
            self._readings.move_to_end(reading.path)
            while len(self._readings) > self._capacity:
                self._readings.popitem(last=False)


def read_appspec_on_disk(
    archive: Path, filename: str, recent: Optional[RecentAppspecs] = None
) -> ApplicationSpecification:
    """The appspec of the revision unpacked in ``archive``: the reading ``recent`` holds
    of the same file, unchanged since; else the file read and parsed anew (and kept)."""
    if recent is None:
        return read_application_specification(archive, filename)
    path = find_application_specification_file(archive, filename)
    try:
        # Taken before the read: a change that races the read shows as a change later.
        stamp = _stamp_on_disk(path)
    except OSError:
        return read_application_specification(archive, filename)
    reading = recent.recall(path, stamp)
    if reading is None:
        reading = AppspecReading(path, stamp, read_application_specification(archive, filename))
        recent.keep(reading)
    return reading.appspec


def run_lifecycle_event(
    event: str,
    spec: DeploymentSpecification,
    deployment: DeploymentDir,
    settings: EngineSettings,
    download_pending: bool,
    appspecs: Optional[RecentAppspecs] = None,
) -> str:
    """Run ``event``'s scripts; ``appspecs`` holds the appspec readings made already (see
    :func:`read_appspec_on_disk`)."""
    with structlog.contextvars.bound_contextvars(lifecycle_event=event):
        source = script_source_dir(event, spec, deployment, settings.root, download_pending)
        archive = source.archive if source is not None else None
        if archive is None or not archive.is_dir():
            log.debug("no revision to take scripts from; nothing to run")
            return ""
        appspec = read_appspec_on_disk(archive, spec.appspec_filename, appspecs)
        scripts = appspec.scripts_for(event)
        if not scripts:
            log.debug("no scripts for this event")
            return ""
        log.info("running scripts", scripts=len(scripts), revision=str(archive))
        deployments_log = settings.root.deployments_log if settings.enable_deployments_log else None
        with open_script_log(
            deployment.script_log,
            spec.deployment_id,
            deployments_log,
            settings.deployments_log_rotation,
        ) as script_log:
            tail = run_event_scripts(
                event,
                scripts,
                archive,
                hook_environment(event, spec, settings.inherited_environment),
                script_log,
                settings.hook_settings,
            )
        log.info("scripts succeeded")
        return tail


def is_lifecycle_event_noop(
    event: str,
    spec: DeploymentSpecification,
    settings: EngineSettings,
    appspecs: Optional[RecentAppspecs] = None,
) -> bool:
    """Whether ``event`` would run nothing (reads the appspec from disk, or takes it from
    ``appspecs``): no revision provides its scripts yet, or that revision's appspec has
    none for it. An appspec that cannot be read is not a no-op: running the event reports
    why."""
    try:
        check_names_fit_the_root(spec, settings.root)
    except AgentError:
        return False
    deployment = deployment_dir_of(spec, settings.root)
    source = script_source_dir(event, spec, deployment, settings.root)
    if source is None or not source.archive.is_dir():
        return True
    try:
        appspec = read_appspec_on_disk(source.archive, spec.appspec_filename, appspecs)
    except AgentError:
        return False
    return not appspec.scripts_for(event)
