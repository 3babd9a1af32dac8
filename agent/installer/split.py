"""Walking half of a large tree in a second process.

With many small files the install's per-file Python work dominates, so the plan, the
space check and the copy hand every other top-level folder of a large tree to a forked
worker (see :mod:`agent.forked_share` for how it runs and answers).
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

from agent.forked_share import ForkedShare, Progress, fork_is_safe
from agent.forked_share import start_share_in_child as _start_share_in_child
from agent.installer.result import InstallError

# A tree whose top level has this many folders is split between two processes.
MIN_FOLDERS_TO_SPLIT = 2
_WORKER_NAME = "the install's second process"


def split_top_level(
    children: List[os.DirEntry[str]],
) -> Optional[List[os.DirEntry[str]]]:
    """The share for a worker (every other child), or None when splitting does not pay."""
    folders = sum(1 for child in children if child.is_dir(follow_symlinks=False))
    if folders < MIN_FOLDERS_TO_SPLIT or not fork_is_safe():
        return None
    return children[1::2]


def start_install_share(work: Callable[[], bytes]) -> ForkedShare:
    """Run ``work`` (a share of the install) in a forked child; an InstallError it raises
    comes back as one, with its message."""

    def run(_progress: Progress) -> bytes:  # pragma: no cover - runs in the worker process
        return work()

    return _start_share_in_child(run, error=InstallError, name=_WORKER_NAME)
