"""Release bundles and the installer, driven inside a systemd box.

Bundles are built with ``release/build_release.py`` from this checkout, or from a copy of it
with another version (an upgrade) or an agent that cannot start (a failed upgrade). They
are written under ``/var/tmp`` and not under ``/tmp``: the box has a ``/tmp`` of its own,
while the rest of the real root shows through its overlay. In the box a bundle is unpacked
as an operator would do (``tar -xzf``) and its ``install`` run with a clean environment.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from tests.support.checkout import REPO
from tests.support.command_service import HOST
from tests.support.systemd_box import SystemdBox

BUNDLES_HOME = Path("/var/tmp")
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_LOG = "/var/log/codedeploy-agent-install.log"
CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
ON_PREMISES = "/etc/codedeploy-agent/conf/codedeploy.onpremises.yml"
ON_PREMISES_TEXT = (
    "---\n"
    f"iam_user_arn: {HOST}\n"
    "aws_access_key_id: AKIDEXAMPLE\n"
    "aws_secret_access_key: not-a-real-secret\n"
    "region: us-east-1\n"
)
# Everything an install may touch, listed to show that a failed one changed nothing.
WATCHED = (
    "/opt",
    "/etc/codedeploy-agent",
    "/etc/systemd/system",
    "/usr/bin/codedeploy-agent",
    "/usr/bin/codedeploy-local",
    "/var/log/aws",
    "/etc/codedeploy-server",
    "/usr/bin/codedeploy-server",
    "/var/lib/codedeploy-server",
)


def _source_files(repo: Path) -> List[str]:
    done = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line]


def copy_checkout(target: Path, version: str, break_run: bool = False) -> Path:
    """A copy of this checkout with another version; ``break_run``: its daemon's ``run``
    fails at once (as an agent that cannot start), every other verb works."""
    for name in _source_files(REPO):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    init = target / "agent" / "__init__.py"
    init.write_text(
        re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text("utf-8")),
        encoding="utf-8",
    )
    if break_run:
        entry = target / "agent" / "daemon" / "entry.py"
        entry.write_text(
            entry.read_text(encoding="utf-8").replace(
                "def main() -> None:\n",
                "def main() -> None:\n"
                '    if "run" in sys.argv[1:]:\n'
                '        print("codedeploy-agent: this build cannot start", file=sys.stderr)\n'
                "        sys.exit(1)\n",
            ),
            encoding="utf-8",
        )
    return target


def build_bundle(repo: Path, dist: Path, *options: str) -> Path:
    """Build a bundle of ``repo`` into ``dist`` (with build_release's ``options``); returns
    the tar.gz."""
    done = subprocess.run(
        [sys.executable, str(repo / "release" / "build_release.py"), "--dist", str(dist), *options],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"build-release failed: {done.stderr}")
    return Path(done.stdout.strip())


@contextlib.contextmanager
def bundles_folder() -> Iterator[Path]:
    """A folder for bundles that the box sees (under /var/tmp), removed at the end."""
    folder = BUNDLES_HOME / f"codedeploy-agent-py-test-{uuid.uuid4().hex[:12]}"
    folder.mkdir(mode=0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bundle_top(bundle: Path) -> str:
    with tarfile.open(bundle) as tar:
        return tar.getnames()[0].split("/")[0]


@dataclass(frozen=True)
class Installer:
    """Runs a bundle's ``install`` in a box, as root with a clean environment."""

    box: SystemdBox

    def unpack(self, bundle: Path) -> str:
        """Unpack ``bundle`` in the box (under /bundles, readable by all); returns its install script's path."""
        where = f"/bundles/{uuid.uuid4().hex[:8]}"
        done = self.box.run(["mkdir", "-p", where])
        assert done.returncode == 0, done.stderr
        done = self.box.run(["tar", "-xzf", str(bundle), "-C", where], timeout=120)
        assert done.returncode == 0, done.stderr
        return f"{where}/{bundle_top(bundle)}/install"

    def run(
        self,
        script: str,
        *arguments: str,
        own_network: bool = False,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 600.0,
        user: Optional[int] = None,
    ) -> subprocess.CompletedProcess[str]:
        variables = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/root", **(env or {})}
        prefix: List[str] = (
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
        )
        argv: Sequence[str] = [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in variables.items()),
            *prefix,
            script,
            *arguments,
        ]
        return self.box.run(argv, timeout=timeout, own_network=own_network)

    def snapshot(self) -> str:
        """Every watched path with its type, mode, size and modification time (the installer's
        own log excepted), to compare before and after."""
        # Folders without their times: adding and removing an entry changes those.
        folders = self.box.run(["find", *WATCHED, "-type", "d", "-printf", "%p d %m\n"])
        others = self.box.run(
            ["find", *WATCHED, "!", "-type", "d", "-printf", "%p %y %m %s %T@ %l\n"]
        )
        lines = sorted(line for line in (folders.stdout + others.stdout).splitlines() if line)
        return "\n".join(lines)

    def status_json(self) -> Dict[str, object]:
        done = self.box.run(["/usr/bin/codedeploy-agent", "status", "--json"])
        return dict(json.loads(done.stdout))


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("install: "), lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def agent_config(
    endpoint: str,
    ca_bundle: Optional[str] = None,
    *,
    log_dir: str = "/var/log/aws/codedeploy-agent/",
    root_dir: str = "/opt/codedeploy-agent/deployment-root",
) -> str:
    """An operator's configuration: the AWS agent's places, the test command service at
    ``endpoint``, fast polling; specifications checked against ``ca_bundle`` when given."""
    signer = f":deployment_signer_ca_file: '{ca_bundle}'\n" if ca_bundle else ""
    return (
        "---\n"
        f":log_dir: '{log_dir}'\n"
        ":pid_dir: '/opt/codedeploy-agent/state/.pid/'\n"
        f":root_dir: '{root_dir}'\n"
        f":on_premises_config_file: '{ON_PREMISES}'\n"
        f":deploy_control_endpoint: '{endpoint}'\n"
        f"{signer}"
        ":wait_between_runs: 0.2\n"
        ":wait_after_error: 1\n"
        ":http_read_timeout: 5\n"
        ":kill_agent_max_wait_time_seconds: 60\n"
    )
