"""A Python work-alike of the AWS CodeDeploy host agent.

The package is laid out by domain concept: the appspec, the deployment specification,
the revision (download and unpack), the installer, the lifecycle events, the agent
configuration, the deployment root on disk, and the programs that drive them
(``codedeploy-local`` now, the daemon later).
"""

from __future__ import annotations

__version__ = "0.1.0"
