"""The settings of running one lifecycle event's scripts.

They live apart from the runner so that every module of the hook machinery (the script
log, the run-as lookup, the process tree) can read the same settings without importing
the runner; :mod:`agent.lifecycle_event.runner` re-exports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Optional


class OutputsLeftOpenPolicy(str, enum.Enum):
    """What a script that exits while a background process holds its output counts as."""

    FAIL = "fail"
    SUCCEED = "succeed"


@dataclass(frozen=True)
class HookRunSettings:
    """How scripts are run; the defaults are the safe choice for a production host."""

    # At a timeout the tree gets SIGTERM, then SIGKILL after this many seconds.
    kill_grace_seconds: float = 5.0
    outputs_left_open: OutputsLeftOpenPolicy = OutputsLeftOpenPolicy.FAIL
    # How long output is still read after the script itself exited.
    outputs_left_open_wait_seconds: float = 1.0
    # A cgroup per script run when the host allows it (otherwise process group + tracking).
    use_cgroups: bool = True
    # ``strip_loader_env_in_hooks``: drop the dynamic loader's variables (``LD_*``).
    strip_loader_env: bool = False
    # ``restrict_hook_env_to_allowlist``: keep only these inherited names (+ hook variables).
    env_allowlist: Optional[FrozenSet[str]] = None
    # While a script's cgroup exists, its path (and this process) is kept in this file, so
    # that the next agent to start after a crash ends and removes what the crash left running.
    cgroup_record_file: Optional[Path] = None
