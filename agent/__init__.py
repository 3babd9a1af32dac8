"""A Python work-alike of the AWS CodeDeploy host agent.

The package is laid out by domain concept (see the README's Layout section): the appspec,
the deployment specification, the agent's configuration, the deployment root on disk, the
revision (fetchers, unpacking), the installer, the lifecycle events and their scripts, one
module per host command, the AWS clients, the command poller, and the two programs that
drive them, ``codedeploy-local`` and the daemon ``codedeploy-agent``. The behaviour they
implement is described in docs/behaviour.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
