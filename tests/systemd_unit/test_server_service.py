"""The server's unit file (``systemd/codedeploy-server.service``) as systemd reads it: in a
systemd box (``tests/support/systemd_box.py``), with the program where the installer puts
it, ``systemd-analyze verify`` has nothing to say. The unit running under the installer is
tested in ``tests/release/test_install_server.py``.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.checkout import REPO
from tests.support.systemd_box import SystemdBox

pytestmark = pytest.mark.root

UNIT = "codedeploy-server.service"
INSTALLED_PROGRAM = "/opt/codedeploy-agent-py/current/bin/codedeploy-server"
WORKTREE_ENVIRONMENT = REPO / ".venv"


def test_systemd_analyze_verify_has_nothing_to_say_about_the_server_unit(
    systemd_box: SystemdBox,
) -> None:
    if not (WORKTREE_ENVIRONMENT / "bin" / "codedeploy-server").exists():
        pytest.skip(
            f"{WORKTREE_ENVIRONMENT}/bin/codedeploy-server is not installed (scripts/setup)"
        )
    made = systemd_box.run(["mkdir", "-p", "/opt/codedeploy-agent-py"])
    assert made.returncode == 0, made.stderr
    systemd_box.run(["ln", "-sfn", str(WORKTREE_ENVIRONMENT), "/opt/codedeploy-agent-py/current"])
    assert systemd_box.exists(INSTALLED_PROGRAM)
    folder = f"/root/verify-{uuid.uuid4().hex[:8]}"
    text = (REPO / "systemd" / UNIT).read_text(encoding="utf-8")
    systemd_box.write_file(f"{folder}/{UNIT}", text)
    verified = systemd_box.run(["systemd-analyze", "verify", f"{folder}/{UNIT}"])
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")
