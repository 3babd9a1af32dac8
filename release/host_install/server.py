"""``install --with-server``: codedeploy-server beside the agent, from the same release.

The server runs from the agent's active release (``current``), whose environment gets the
server's wheels from the bundle (built with ``build-release --with-server``). Under the
caller's undo journal: its configuration folder and ``server.yml`` (written only when
absent), ``/usr/bin/codedeploy-server``, the unit, enabled, and the start, which returns
once the server said READY=1 (it listens). ``--uninstall`` stops it and removes its unit and
link but keeps its configuration, master key and data folder; ``--purge`` removes those
too, never a system folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Tuple

from host_install.actions import configured_value_on_disk, is_system_folder, points_into, say
from host_install.bundle import Bundle
from host_install.commands import first_error_line, run_command
from host_install.errors import InstallError
from host_install.layout import SERVER_UNIT_NAME, HostLayout
from host_install.python_env import install_wheels_on_disk
from host_install.service import read_unit_state, start_unit_and_wait_ready, systemctl
from host_install.undo import UndoJournal, remove_on_disk

SERVER_EXTRA = "server"
_LOG_HINT = "journalctl -u codedeploy-server"


def check_bundle_has_server(bundle: Bundle) -> None:
    if SERVER_EXTRA not in bundle.extras or bundle.server_unit_file is None:
        raise InstallError(
            "--with-server: this bundle does not carry the server (build it with"
            " `scripts/build-release --with-server`)"
        )


def check_server_link_is_free(layout: HostLayout) -> None:
    link = layout.server_link
    if (link.exists() or link.is_symlink()) and not points_into(link, layout.prefix):
        raise InstallError(f"{link} exists and is not ours: move it away to install the server")


def add_server_wheels_on_disk(bundle: Bundle, release: Path) -> None:
    """The server's dependencies in the release's environment (nothing when they are)."""
    if not _server_imports(release):
        install_wheels_on_disk(bundle, release, [SERVER_EXTRA])


def _server_imports(release: Path) -> bool:
    probe = "import sqlalchemy, alembic, uvicorn, cryptography, psycopg"
    python = release / "bin" / "python"
    return python.exists() and run_command([str(python), "-c", probe]).returncode == 0


def install_server(
    bundle: Bundle,
    layout: HostLayout,
    journal: UndoJournal,
    release: Path,
    *,
    start: bool,
    upgrade: bool,
) -> None:
    """Configuration, link, unit, enabled and (unless not ``start``) started and ready.
    The server of ``release`` checks its configuration before the unit is touched."""
    assert bundle.server_unit_file is not None and bundle.server_default_config is not None
    journal.make_folders_on_disk(layout.server_config_dir, 0o750)
    if layout.server_config_file.exists():
        say(f"kept the server's configuration {layout.server_config_file}")
    else:
        text = bundle.server_default_config.read_bytes()
        journal.replace_file_on_disk(layout.server_config_file, text, 0o640)
        say(f"wrote the server's default configuration {layout.server_config_file}")
    data_dir = check_server_config_on_disk(release / "bin" / "codedeploy-server", layout)
    journal.point_link_on_disk(layout.server_link, layout.current / "bin" / "codedeploy-server")
    if not data_dir.exists() and not data_dir.is_symlink():
        # Made by systemd (StateDirectory) or the server at its first start: a failed
        # install takes it back with whatever that start left in it.
        journal.created_on_disk(data_dir)
    journal.record("reload systemd", lambda: _quiet_systemctl("daemon-reload"))
    unit = bundle.server_unit_file.read_bytes()
    changed = journal.replace_file_on_disk(layout.server_unit_file, unit, 0o644)
    systemctl("daemon-reload")
    before = read_unit_state(SERVER_UNIT_NAME)
    if not before.enabled:
        systemctl("enable", SERVER_UNIT_NAME)
        journal.record("disable the server", lambda: _quiet_systemctl("disable", SERVER_UNIT_NAME))
    if not start:
        say(f"installed and enabled {SERVER_UNIT_NAME}; not started (--no-start)")
        return
    if before.active_state == "active":
        if not (changed or upgrade):
            say(f"the server is already running (pid {before.main_pid})")
            return
        say("restarting the server for its new release or unit")
        systemctl("stop", SERVER_UNIT_NAME, timeout=120.0)
        journal.record(
            "start the server again", lambda: _quiet_systemctl("start", SERVER_UNIT_NAME)
        )
    journal.record("stop the server", lambda: _quiet_systemctl("stop", SERVER_UNIT_NAME))
    state = start_unit_and_wait_ready(SERVER_UNIT_NAME, _LOG_HINT, what="the server")
    say(f"the server is ready (pid {state.main_pid}); see `systemctl status codedeploy-server`")


def uninstall_server(layout: HostLayout, *, purge: bool, with_systemd: bool) -> None:
    """Stop the server and remove its unit and link; with ``purge`` its configuration
    folder and data folder too (never a system folder). Twice is once."""
    data_dir = _configured_data_dir(layout)
    if layout.server_unit_file.is_file():
        if with_systemd:
            systemctl("stop", SERVER_UNIT_NAME, timeout=120.0)
            systemctl("disable", SERVER_UNIT_NAME)
        layout.server_unit_file.unlink()
        say(f"removed {layout.server_unit_file}")
        if with_systemd:
            systemctl("daemon-reload")
            systemctl("reset-failed", SERVER_UNIT_NAME)
    if points_into(layout.server_link, layout.prefix):
        layout.server_link.unlink()
    if not purge:
        if layout.server_config_dir.exists():
            say(
                f"kept the server's configuration ({layout.server_config_dir}) and data"
                f" ({data_dir}) (--purge removes them)"
            )
        return
    if is_system_folder(data_dir):
        say(f"kept the server's data folder {data_dir}: --purge never removes a system folder")
    elif data_dir.exists() or data_dir.is_symlink():
        remove_on_disk(data_dir)
        say(f"removed the server's data folder {data_dir}")
    if layout.server_config_dir.exists():
        shutil.rmtree(layout.server_config_dir)
        say(f"removed {layout.server_config_dir}")


def check_server_config_on_disk(program: Path, layout: HostLayout) -> Path:
    """The server reads its own configuration (``check-config``: it changes nothing), so
    that a bad key or an unusable TLS pair refuses the install even with ``--no-start``.
    Returns the data folder it names."""
    data_dir, problem = _ask_server_config(program, layout)
    if data_dir is None:
        config = layout.server_config_file
        raise InstallError(f"the server refuses its configuration {config}: {problem}")
    return data_dir


def _ask_server_config(program: Path, layout: HostLayout) -> Tuple[Optional[Path], str]:
    """(the data folder, or None and why not) as ``program check-config`` reports them."""
    command = [str(program), "--config", str(layout.server_config_file), "check-config"]
    result = run_command(command)
    if result.returncode != 0:
        reason = first_error_line(result.stderr, "it gave no reason")
        return None, reason.removeprefix("codedeploy-server: ")
    try:
        found = json.loads(result.stdout).get("data_dir")
    except (ValueError, AttributeError):
        found = None
    if isinstance(found, str) and found.startswith("/"):
        return Path(found), ""
    return None, "its check-config report names no data folder"


def _configured_data_dir(layout: HostLayout) -> Path:
    """The data folder of an installed server: asked of the server while its program is
    there, else read from its configuration's lines."""
    program = layout.current / "bin" / "codedeploy-server"
    if program.exists():
        found, _ = _ask_server_config(program, layout)
        if found is not None:
            return found
    line = configured_value_on_disk(layout.server_config_file, "data_dir")
    return Path(line) if line and line.startswith("/") else layout.server_default_data_dir


def _quiet_systemctl(*arguments: str) -> None:
    systemctl(*arguments)
