"""Where the installer puts things on a host, in one place.

The agent's own files keep the AWS agent's places (configuration under
``/etc/codedeploy-agent/conf``, logs under ``/var/log/aws/codedeploy-agent``, the deployment
root and state under ``/opt/codedeploy-agent``), so an AWS agent's configuration and
deployment root carry over unchanged. The program itself lives apart, under
``/opt/codedeploy-agent-py``: one virtual environment per release in ``releases/``, the
active one named by the symlink ``current`` and the one before it by ``previous``, so an
upgrade is a switch of one link and a failed one is switched back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "codedeploy-agent.service"
SERVER_UNIT_NAME = "codedeploy-server.service"


@dataclass(frozen=True)
class HostLayout:
    prefix: Path = Path("/opt/codedeploy-agent-py")
    bin_dir: Path = Path("/usr/bin")
    config_dir: Path = Path("/etc/codedeploy-agent/conf")
    unit_file: Path = Path("/etc/systemd/system") / UNIT_NAME
    # Written by the operator; read by the unit (after /etc/environment) for the agent and hooks.
    environment_file: Path = Path("/etc/codedeploy-agent/conf/environment")
    # The AWS agent's files that a migration moved aside (kept until --purge).
    aws_agent_backup: Path = Path("/etc/codedeploy-agent/aws-agent-backup")
    log_file: Path = Path("/var/log/codedeploy-agent-install.log")
    # Defaults of the agent's configuration; the configured ones are asked of the agent.
    default_log_dir: Path = Path("/var/log/aws/codedeploy-agent")
    default_root_dir: Path = Path("/opt/codedeploy-agent/deployment-root")
    default_state_dir: Path = Path("/opt/codedeploy-agent/state")
    # codedeploy-server (install --with-server): its unit, configuration folder (with the
    # master key) and default data folder, as server/configuration.py and its unit name them.
    server_unit_file: Path = Path("/etc/systemd/system") / SERVER_UNIT_NAME
    server_config_dir: Path = Path("/etc/codedeploy-server")
    server_default_data_dir: Path = Path("/var/lib/codedeploy-server")

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    @property
    def previous(self) -> Path:
        return self.prefix / "previous"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "codedeployagent.yml"

    @property
    def on_premises_file(self) -> Path:
        return self.config_dir / "codedeploy.onpremises.yml"

    @property
    def agent_program(self) -> Path:
        """What the unit starts: through ``current``, so a switch needs no unit change."""
        return self.current / "bin" / "codedeploy-agent"

    @property
    def server_config_file(self) -> Path:
        return self.server_config_dir / "server.yml"

    @property
    def server_link(self) -> Path:
        """``codedeploy-server`` on PATH, a symlink into ``current`` like the agent's."""
        return self.bin_dir / "codedeploy-server"

    def command_links(self) -> dict[str, Path]:
        """The commands put on PATH, each a symlink into ``current``."""
        return {name: self.bin_dir / name for name in ("codedeploy-agent", "codedeploy-local")}
