"""``install --with-server`` under a real systemd (one box for the module): the server
installed beside the agent from a bundle built with ``--with-server``, serving as the
``codedeploy-server`` service, its admin commands working on the same data folder; an
install whose server cannot start put back whole; an upgrade moving the server to the
new release with its data; ``--uninstall`` keeping the server's
configuration and data, ``--purge`` removing them.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import List

import pytest

from tests.release.conftest import NEWER_VERSION
from tests.support.host_install import Installer, assert_one_line_failure
from tests.support.server import free_loopback_port
from tests.support.systemd_box import SystemdBox

pytestmark = pytest.mark.root

SERVER_CONFIG = "/etc/codedeploy-server/server.yml"
DATA_DIR = "/var/lib/codedeploy-server"
MASTER_KEY = "/etc/codedeploy-server/master.key"
# Nothing listens on port 1 of loopback: a PostgreSQL URL the server cannot open.
UNREACHABLE_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


def _server_config(port: int) -> str:
    return f"listen: 127.0.0.1:{port}\ndata_dir: {DATA_DIR}\n"


def _health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        return int(answer.status)


def _answers(port: int) -> bool:
    try:
        return _health(port) == 200
    except OSError:
        return False


def _property(box: SystemdBox, name: str) -> str:
    shown = box.systemctl("show", "codedeploy-server", f"--property={name}").stdout
    return shown.strip().partition("=")[2]


def test_a_server_that_cannot_start_leaves_the_host_as_it_was(
    release_bundle: Path, server_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    before = installer.snapshot()
    # A bundle without the server is refused before anything changes.
    plain = installer.unpack(release_bundle)
    done = installer.run(plain, "--with-server", own_network=True)
    assert_one_line_failure(done, "--with-server", "build-release --with-server")
    assert installer.snapshot() == before
    # A server.yml the server refuses (a key it does not know), even with --no-start
    # where nothing would start the server to find out: every step, the agent's
    # included, is taken back.
    script = installer.unpack(server_bundle)
    systemd_box.write_file(SERVER_CONFIG, "listen: 127.0.0.1:9190\nno_such_key: 1\n")
    configured = installer.snapshot()
    for extra in ((), ("--no-start",)):
        done = installer.run(script, "--with-server", *extra, own_network=True)
        assert_one_line_failure(
            done, f"the server refuses its configuration {SERVER_CONFIG}", "'no_such_key'"
        )
        assert installer.snapshot() == configured, done.stdout
    # A server that reads its configuration but fails at start (its database cannot be
    # reached): taken back the same way.
    systemd_box.write_file(SERVER_CONFIG, f"database_url: {UNREACHABLE_DATABASE}\n")
    done = installer.run(script, "--with-server", own_network=True)
    assert_one_line_failure(done, "the server did not become ready")
    systemd_box.run(["rm", "-rf", "/etc/codedeploy-server"])
    assert installer.snapshot() == before, done.stdout


def test_install_with_server_serves_then_uninstall_keeps_its_data_and_purge_removes_it(
    server_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    before = installer.snapshot()
    script = installer.unpack(server_bundle)
    port = free_loopback_port()
    # An operator's server.yml is kept as it is.
    systemd_box.write_file(SERVER_CONFIG, _server_config(port))
    done = installer.run(script, "--with-server", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    assert "the server is ready" in done.stdout
    assert f"kept the server's configuration {SERVER_CONFIG}" in done.stdout
    assert systemd_box.systemctl("is-active", "codedeploy-server").stdout.strip() == "active"
    assert systemd_box.systemctl("is-enabled", "codedeploy-server").stdout.strip() == "enabled"
    assert _health(port) == 200
    assert systemd_box.read_text(SERVER_CONFIG) == _server_config(port)
    # The admin commands, on PATH, work on the running server's data folder.
    made = systemd_box.run(["codedeploy-server", "keys", "create-operator", "ops"])
    assert made.returncode == 0, made.stderr
    key_id = json.loads(made.stdout)["AccessKeyId"]
    listed = systemd_box.run(["codedeploy-server", "keys", "list"])
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "ops" in listed.stdout
    assert systemd_box.exists(f"{DATA_DIR}/server.db")
    assert systemd_box.run(["stat", "-c", "%a", MASTER_KEY]).stdout.strip() == "600"

    # Again, even without the option (the server is installed, so it comes along): nothing
    # to do, the same process serves on.
    pid = _property(systemd_box, "MainPID")
    done = installer.run(script, own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "codedeploy-server is installed here: upgrading it too" in done.stdout
    assert "the server is already running" in done.stdout
    assert _property(systemd_box, "MainPID") == pid

    done = installer.run(script, "--uninstall")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not systemd_box.exists("/etc/systemd/system/codedeploy-server.service")
    assert not systemd_box.exists("/usr/bin/codedeploy-server")
    assert not _answers(port)
    for kept in (SERVER_CONFIG, MASTER_KEY, f"{DATA_DIR}/server.db"):
        assert systemd_box.exists(kept), kept
    again = installer.run(script, "--uninstall")
    assert again.returncode == 0, again.stdout + again.stderr

    done = installer.run(script, "--uninstall", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not systemd_box.exists("/etc/codedeploy-server")
    assert not systemd_box.exists(DATA_DIR)
    assert installer.snapshot() == before


def test_an_upgrade_restarts_the_server_on_the_new_release_with_its_keys_and_data(
    server_bundle: Path, newer_server_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    before = installer.snapshot()
    port = free_loopback_port()
    systemd_box.write_file(SERVER_CONFIG, _server_config(port))
    done = installer.run(installer.unpack(server_bundle), "--with-server", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    made = systemd_box.run(["codedeploy-server", "keys", "create-operator", "ops"])
    key_id = json.loads(made.stdout)["AccessKeyId"]
    signer = systemd_box.run(["codedeploy-server", "signer"]).stdout
    ca_before = systemd_box.read_text(json.loads(signer)["ca_file"])
    old_pid = _property(systemd_box, "MainPID")

    # The newer bundle, without the option: the installed server comes along.
    done = installer.run(installer.unpack(newer_server_bundle), own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    assert "restarting the server for its new release" in done.stdout
    assert "the server is ready" in done.stdout
    assert _property(systemd_box, "MainPID") not in ("0", old_pid)
    serving = systemd_box.run(["readlink", "-f", "/usr/bin/codedeploy-server"]).stdout
    assert NEWER_VERSION in serving, serving
    assert _health(port) == 200
    # Its configuration, keys and signer are the ones it had.
    assert systemd_box.read_text(SERVER_CONFIG) == _server_config(port)
    listed = systemd_box.run(["codedeploy-server", "keys", "list"])
    assert listed.returncode == 0 and key_id in listed.stdout, listed.stderr
    assert systemd_box.read_text(json.loads(signer)["ca_file"]) == ca_before

    done = installer.run(installer.unpack(newer_server_bundle), "--uninstall", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert installer.snapshot() == before


def _children(box: SystemdBox, pid: str) -> List[str]:
    found = box.run(["pgrep", "-P", pid])
    return found.stdout.split()


def test_the_service_serves_from_several_processes_and_stops_them_all(
    server_bundle: Path, systemd_box: SystemdBox
) -> None:
    installer = Installer(systemd_box)
    script = installer.unpack(server_bundle)
    port = free_loopback_port()
    systemd_box.write_file(SERVER_CONFIG, _server_config(port) + "server_processes: 2\n")
    done = installer.run(script, "--with-server", own_network=True)
    assert done.returncode == 0, done.stdout + done.stderr + systemd_box.diagnostics()
    assert _health(port) == 200
    main_pid = _property(systemd_box, "MainPID")
    assert len(_children(systemd_box, main_pid)) == 1, systemd_box.diagnostics()
    # Under the unit's sandbox the copy serves too: its write lock beside the database.
    made = systemd_box.run(["codedeploy-server", "keys", "create-operator", "ops"])
    assert made.returncode == 0, made.stderr
    stopped = systemd_box.systemctl("stop", "codedeploy-server")
    assert stopped.returncode == 0, stopped.stderr
    assert _property(systemd_box, "Result") == "success"
    assert _property(systemd_box, "ExecMainStatus") == "0"
    assert systemd_box.run(["pgrep", "-f", "codedeploy-server --config"]).stdout == ""
