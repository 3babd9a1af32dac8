"""Install (fresh or upgrade, migrating from the AWS agent on the way) and uninstall.

An install builds the new release's virtual environment first, beside whatever runs now,
so nothing the host uses changes until every check has passed. Then, under the undo
journal: the configuration (written only when absent), the AWS agent retired if present,
the running agent stopped once it is idle (an upgrade), ``current`` switched to the new
release, the commands on PATH, the agent's folders (made by the agent's own ``prepare``,
which knows the configured places and modes), the unit, and the start, which returns when
the agent told systemd it is ready. Any failure undoes every step, so an upgrade that does
not become ready leaves the previous version running. Uninstall keeps the configuration,
the deployment root and the logs; ``--purge`` removes those too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from host_install.aws_agent import find_aws_agent, retire_aws_agent, unit_file_is_ours
from host_install.bundle import Bundle
from host_install.commands import first_error_line, run_command
from host_install.errors import InstallError
from host_install.layout import UNIT_NAME, HostLayout
from host_install.python_env import build_environment_on_disk, find_python_for
from host_install.service import (
    agent_status_json,
    read_unit_state,
    settled_status_text,
    start_unit_and_wait_ready,
    systemctl,
    systemd_runs_host,
    wait_until_idle,
)
from host_install.undo import UndoJournal, remove_on_disk

log = logging.getLogger("install")

_PROXY = re.compile(r"^https?://[^\s'\"/]+(:\d+)?/?$")
# Room the virtual environment needs beyond its wheels (unpacked they take about 3x).
_SPACE_FACTOR = 4
_SPACE_MARGIN = 32 << 20


@dataclass(frozen=True)
class InstallOptions:
    config_file: Optional[Path] = None
    on_premises_file: Optional[Path] = None
    proxy: Optional[str] = None
    start: bool = True
    wait_for_idle_seconds: float = 3600.0
    # The project's extras installed with the agent ("server": --with-server).
    extras: Tuple[str, ...] = ()


def say(message: str) -> None:
    print(f"install: {message}", flush=True)
    log.info("%s", message)


def check_proxy(proxy: str) -> None:
    if not _PROXY.match(proxy):
        raise InstallError(
            f"--proxy {proxy!r} is not a proxy URI (http://host:port or https://host:port)"
        )


def configured_value_on_disk(config: Path, key: str) -> Optional[str]:
    """What an existing configuration sets ``key`` to, by a line-level read: enough for the
    plain scalars compared or looked up here (the agent parses the file for real, and is
    asked first where it can be); None when the file or the key is not there."""
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    pattern = re.compile(rf"""^:?{key}:?\s*:?\s*['"]?([^'"#\s]*)['"]?\s*(#.*)?$""")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            return match.group(1) or None
    return None


def _config_with_proxy(default: str, proxy: Optional[str]) -> str:
    if proxy is None:
        return default
    line = f":proxy_uri: '{proxy}'"
    lines = default.splitlines()
    for index, text in enumerate(lines):
        if text.lstrip("# ").startswith(":proxy_uri:"):
            lines[index] = line
            return "\n".join(lines) + "\n"
    return default.rstrip("\n") + "\n" + line + "\n"


def _check_free_space_on_disk(bundle: Bundle, prefix: Path) -> None:
    wheels = [bundle.wheel, *bundle.wheelhouse.glob("*.whl")]
    needed = sum(w.stat().st_size for w in wheels) * _SPACE_FACTOR + _SPACE_MARGIN
    probe = prefix
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise InstallError(
            f"not enough free space for the agent under {prefix}: {free >> 20} MiB free,"
            f" about {needed >> 20} MiB needed"
        )


def _installed_release(layout: HostLayout) -> Optional[Path]:
    if not layout.current.is_symlink():
        return None
    target = Path(os.readlink(layout.current))
    return target if target.is_absolute() else layout.prefix / target


def _check_options_against_host(options: InstallOptions, layout: HostLayout) -> None:
    """Everything that can be refused before the host changes."""
    for given, what in (
        (options.config_file, "--config"),
        (options.on_premises_file, "--on-premises-config"),
    ):
        if given is not None and not given.is_file():
            raise InstallError(f"{what} {given}: no such file")
    if options.proxy is not None:
        check_proxy(options.proxy)
        config = options.config_file or layout.config_file
        wanted = {options.proxy, options.proxy.rstrip("/")}
        if config.is_file() and configured_value_on_disk(config, "proxy_uri") not in wanted:
            raise InstallError(
                f"--proxy: {config} exists with another proxy_uri (or none) and is never"
                " overwritten: set :proxy_uri: in it, or give the whole file with --config"
            )
    for name, link in layout.command_links().items():
        if (link.exists() or link.is_symlink()) and not points_into(link, layout.prefix):
            raise InstallError(f"{link} exists and is not ours: move it away to install {name}")


def points_into(link: Path, prefix: Path) -> bool:
    return link.is_symlink() and os.readlink(link).startswith(str(prefix) + "/")


# Modes of the agent's folders when the install makes them: hook output and command
# diagnostics (which may echo a secret a script printed) stay unreadable to other users;
# the deployment root stays traversable, for hooks that run as another user (runas).
_FOLDER_MODES = {"log_dir": 0o750, "pid_dir": 0o700, "root_dir": 0o755}


def install_agent(
    bundle: Bundle,
    options: InstallOptions,
    layout: HostLayout,
    python: str,
    also: Optional[Callable[[UndoJournal, Path, bool], None]] = None,
) -> None:
    """Install ``bundle`` (fresh, again, or as an upgrade); on failure the host is as before.
    ``also`` runs last under the same journal (with the release and whether it is an
    upgrade): the server, with --with-server."""
    _check_options_against_host(options, layout)
    with_systemd = systemd_runs_host()
    release = layout.releases / bundle.release_name
    installed = _installed_release(layout)
    upgrade = installed is not None and installed != release
    aws = find_aws_agent(layout, with_systemd)
    journal = UndoJournal()
    try:
        if not (release / "bin" / "codedeploy-agent").exists():
            _check_free_space_on_disk(bundle, layout.prefix)
            journal.make_folders_on_disk(layout.releases, 0o755)
            journal.created_on_disk(release)
            say(f"installing version {bundle.version} into {release}")
            found = find_python_for(bundle, python, _path())
            build_environment_on_disk(bundle, found, release, options.extras)
        program = release / "bin" / "codedeploy-agent"
        changed, folders = _install_config_files(bundle, options, layout, journal, program)
        if upgrade and installed is not None:
            _stop_old_agent(installed, layout, options, journal, with_systemd)
        if aws is not None:
            say(
                f"retiring {aws.describe()}: stopped and disabled; its configuration and"
                " deployment root are kept"
            )
            retire_aws_agent(aws, layout, journal, with_systemd)
        if installed != release:
            if installed is not None:
                journal.point_link_on_disk(layout.previous, installed)
            journal.point_link_on_disk(layout.current, release)
        for name, link in layout.command_links().items():
            journal.point_link_on_disk(link, layout.current / "bin" / name)
        _prepare_agent_folders(layout, journal, folders)
        _install_and_start_service(
            bundle, options, layout, journal, with_systemd, upgrade=upgrade, changed=changed
        )
        if also is not None:
            also(journal, release, upgrade)
    except BaseException:
        failed = journal.undo_all()
        if failed:
            log.error("could not put back: %s", "; ".join(failed))
        raise
    journal.forget()
    _prune_releases_on_disk(layout)


def _path() -> str:
    return os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")


def _install_config_files(
    bundle: Bundle,
    options: InstallOptions,
    layout: HostLayout,
    journal: UndoJournal,
    program: Path,
) -> Tuple[bool, Dict[str, Path]]:
    """Put the configuration files in place; whether one of them changed, and the agent's
    folders as the installed configuration names them."""
    changed = False
    journal.make_folders_on_disk(layout.config_dir, 0o755)
    if options.config_file is not None:
        _check_config_with_agent(program, options.config_file, layout)
        content = options.config_file.read_bytes()
        if journal.replace_file_on_disk(layout.config_file, content, 0o640):
            changed = True
            say(f"installed {options.config_file} as {layout.config_file}")
    elif not layout.config_file.exists():
        default = bundle.default_config.read_text(encoding="utf-8")
        text = _config_with_proxy(default, options.proxy)
        journal.replace_file_on_disk(layout.config_file, text.encode("utf-8"), 0o640)
        say(f"wrote the default configuration {layout.config_file}")
    else:
        say(f"kept the configuration {layout.config_file}")
    if options.on_premises_file is not None:
        content = options.on_premises_file.read_bytes()
        if journal.replace_file_on_disk(layout.on_premises_file, content, 0o600):
            changed = True
            say(f"installed {options.on_premises_file} as {layout.on_premises_file}")
    return changed, _check_config_with_agent(program, layout.config_file, layout)


def _check_config_with_agent(program: Path, config: Path, layout: HostLayout) -> Dict[str, Path]:
    """The agent itself reads the file: a bad key or value is refused before anything runs.
    Returns the log folder, pid folder and deployment root as the agent reads them."""
    result = run_command([str(program), "--config_file", str(config), "status", "--json"])
    if result.returncode not in (0, 3):
        raise InstallError(first_error_line(result.stderr, f"{config} cannot be read by the agent"))
    try:
        paths = json.loads(result.stdout).get("paths")
    except (ValueError, AttributeError):
        paths = None
    if isinstance(paths, dict):
        return {key: Path(str(paths[key])) for key in _FOLDER_MODES if paths.get(key)}
    return {
        "log_dir": layout.default_log_dir,
        "pid_dir": layout.default_state_dir / ".pid",
        "root_dir": layout.default_root_dir,
    }


def _stop_old_agent(
    installed: Path,
    layout: HostLayout,
    options: InstallOptions,
    journal: UndoJournal,
    with_systemd: bool,
) -> None:
    old_program = installed / "bin" / "codedeploy-agent"
    wait_until_idle(old_program, layout.config_file, options.wait_for_idle_seconds)
    if with_systemd:
        state = read_unit_state(UNIT_NAME)
        if state.active:
            say("stopping the running agent (it finishes a command that has just started)")
            result = systemctl("stop", UNIT_NAME, timeout=7300.0)
            if result.returncode != 0:
                raise InstallError(f"cannot stop the running agent: {result.stderr.strip()}")
            journal.record("start the previous version again", _start_unit_again)
    else:
        status = agent_status_json(old_program, layout.config_file)
        if status is not None and status.get("running"):
            run_command(
                [str(old_program), "--config_file", str(layout.config_file), "stop"], timeout=7300.0
            )
            journal.record(
                "start the previous version again",
                lambda: _start_without_systemd(layout),
            )


def _start_unit_again() -> None:
    systemctl("reset-failed", UNIT_NAME)
    result = systemctl("start", UNIT_NAME, timeout=300.0)
    if result.returncode != 0:
        raise InstallError(f"systemctl start {UNIT_NAME} failed")


def _start_without_systemd(layout: HostLayout) -> None:
    result = run_command(
        [str(layout.agent_program), "--config_file", str(layout.config_file), "start"]
    )
    if result.returncode != 0:
        raise InstallError(first_error_line(result.stderr, "codedeploy-agent start failed"))


def _prepare_agent_folders(
    layout: HostLayout, journal: UndoJournal, folders: Dict[str, Path]
) -> None:
    """Make the agent's folders that are missing (their parents 0755), then let the agent
    check its configuration and apply the modes its restrict_* keys ask for."""
    program = layout.agent_program
    for key, folder in folders.items():
        if not folder.exists() and not folder.is_symlink():
            journal.make_folders_on_disk(folder.parent, 0o755)
            journal.make_folders_on_disk(folder, _FOLDER_MODES[key])
    result = run_command([str(program), "--config_file", str(layout.config_file), "prepare"])
    if result.returncode != 0:
        raise InstallError(first_error_line(result.stderr, "codedeploy-agent prepare failed"))


def _install_and_start_service(
    bundle: Bundle,
    options: InstallOptions,
    layout: HostLayout,
    journal: UndoJournal,
    with_systemd: bool,
    *,
    upgrade: bool,
    changed: bool,
) -> None:
    if layout.unit_file.parent.is_dir():
        unit = bundle.unit_file.read_bytes()
        if with_systemd:
            journal.record("reload systemd", lambda: _quiet_systemctl("daemon-reload"))
        changed = journal.replace_file_on_disk(layout.unit_file, unit, 0o644) or changed
    if not with_systemd:
        if options.start:
            _start_without_systemd(layout)
            journal.record(
                "stop the agent",
                lambda: _quiet_run(
                    [str(layout.agent_program), "--config_file", str(layout.config_file), "stop"]
                ),
            )
            say(
                "systemd does not run this host: started the agent with `codedeploy-agent"
                " start`; it will not start by itself at boot"
            )
        else:
            say("systemd does not run this host; start the agent with `codedeploy-agent start`")
        return
    systemctl("daemon-reload")
    before = read_unit_state(UNIT_NAME)
    if not before.enabled:
        systemctl("enable", UNIT_NAME)
        journal.record("disable the service", lambda: _quiet_systemctl("disable", UNIT_NAME))
    if not options.start:
        say(f"installed and enabled {UNIT_NAME}; not started (--no-start)")
        return
    if not upgrade and before.active_state == "active":
        if not changed:
            say(
                f"version {bundle.version} is already installed and running (pid {before.main_pid})"
            )
            return
        # The same release again with another unit or configuration: a restart, once idle.
        wait_until_idle(layout.agent_program, layout.config_file, options.wait_for_idle_seconds)
        say("restarting the agent for its new configuration")
        systemctl("stop", UNIT_NAME, timeout=7300.0)
        journal.record("start the agent again", _start_unit_again)
    journal.record("stop the agent", lambda: _quiet_systemctl("stop", UNIT_NAME))
    state = start_unit_and_wait_ready(
        UNIT_NAME, f"{layout.log_file} and journalctl -u codedeploy-agent"
    )
    say(f"the agent is ready (pid {state.main_pid}): {settled_status_text(UNIT_NAME, state)}")


def _quiet_systemctl(*arguments: str) -> None:
    systemctl(*arguments)


def _quiet_run(argv: List[str]) -> None:
    run_command(argv)


def _prune_releases_on_disk(layout: HostLayout) -> None:
    """Keep the current and the previous release; remove older ones."""
    keep = {p.resolve() for p in (layout.current, layout.previous) if p.is_symlink()}
    if not layout.releases.is_dir():
        return
    for release in layout.releases.iterdir():
        if release.resolve() not in keep:
            log.info("removing the old release %s", release)
            shutil.rmtree(release, ignore_errors=True)


# -- uninstall ---------------------------------------------------------------------------------


def uninstall_agent(layout: HostLayout, purge: bool) -> None:
    """Stop and remove the agent; keep its configuration, deployment root and logs unless
    ``purge``. Doing it twice is doing it once."""
    with_systemd = systemd_runs_host()
    ours = layout.unit_file.is_file() and unit_file_is_ours(layout.unit_file, layout)
    program = layout.agent_program
    folders: Dict[str, Path] = {}
    if purge:
        folders = _purge_targets(program, layout)
    if with_systemd and ours:
        systemctl("stop", UNIT_NAME, timeout=7300.0)
        systemctl("disable", UNIT_NAME)
    elif program.exists():
        run_command(
            [str(program), "--config_file", str(layout.config_file), "stop"], timeout=7300.0
        )
    if ours:
        layout.unit_file.unlink()
        say(f"removed {layout.unit_file}")
        if with_systemd:
            systemctl("daemon-reload")
            systemctl("reset-failed", UNIT_NAME)
    for link in layout.command_links().values():
        if points_into(link, layout.prefix):
            link.unlink()
    if layout.prefix.exists():
        shutil.rmtree(layout.prefix)
        say(f"removed {layout.prefix}")
    if purge:
        for what, folder in folders.items():
            if is_system_folder(folder):
                say(f"kept the {what} {folder}: --purge never removes a system folder")
            elif folder.exists() or folder.is_symlink():
                remove_on_disk(folder)
                say(f"removed the {what} {folder}")
        _remove_if_empty(layout.default_log_dir.parent)  # /var/log/aws, made for it
        _remove_if_empty(layout.default_state_dir)
        _remove_if_empty(layout.default_state_dir.parent)
        config_home = layout.config_dir.parent
        if config_home.exists():
            shutil.rmtree(config_home)
            say(f"removed {config_home}")
    else:
        say(
            f"kept the configuration ({layout.config_dir}), the deployment root and the logs"
            " (--purge removes them)"
        )


def _purge_targets(program: Path, layout: HostLayout) -> Dict[str, Path]:
    """The configured log folder, deployment root and pid folder: as the agent reads the
    configuration when it is still installed, else as its lines say, else the defaults."""
    named = {"log_dir": "log folder", "root_dir": "deployment root", "pid_dir": "state folder"}
    defaults = {
        "log_dir": layout.default_log_dir,
        "root_dir": layout.default_root_dir,
        "pid_dir": layout.default_state_dir / ".pid",
    }
    status = agent_status_json(program, layout.config_file) if program.exists() else None
    paths = status.get("paths") if status else None
    folders: Dict[str, Path] = {}
    for key, what in named.items():
        found = paths.get(key) if isinstance(paths, dict) else None
        found = found or configured_value_on_disk(layout.config_file, key)
        folders[what] = Path(str(found)) if found else defaults[key]
    return folders


# Folders a configuration could name by mistake as its log folder or deployment root.
_SYSTEM_FOLDERS = frozenset(
    [
        *("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt"),
        *("/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/lib"),
        *("/usr/local", "/usr/share", "/var", "/var/cache", "/var/lib", "/var/log", "/var/www"),
        *("/tmp", "/var/tmp"),  # noqa: S108 - names to refuse, not places to write
    ]
)


def is_system_folder(folder: Path) -> bool:
    resolved = Path(os.path.normpath(folder))
    return str(resolved) in _SYSTEM_FOLDERS or len(resolved.parts) < 3


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
