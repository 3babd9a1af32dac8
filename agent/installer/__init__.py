"""The Install step: turning an unpacked revision into installed files and permissions.

``install_revision_on_disk`` plans the whole install, removes the previous revision of the
group only when the plan holds, copies the files and applies the appspec's permissions,
keeping the cleanup list and the install log in the AWS agent's formats.
"""

from __future__ import annotations

from agent.installer.install import install_revision_on_disk
from agent.installer.result import InstallError, InstallResult

__all__ = ["InstallError", "InstallResult", "install_revision_on_disk"]
