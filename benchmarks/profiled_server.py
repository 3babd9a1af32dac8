"""``codedeploy-server`` under cProfile, every thread of it: ``python profiled_server.py
STATS_FILE ARGUMENTS...`` runs the server with ARGUMENTS and, when it exits, writes the
merged profile of its main thread and its worker threads to STATS_FILE (pstats format).

Why: the server answers requests on a pool of database threads, which a plain ``python -m
cProfile`` does not see (it profiles the main thread only). Each thread is timed by its
own CPU clock (``time.thread_time``), not the wall clock: with one core's worth of Python
threads, a wall-clock profile counts the time a thread waits for the GIL as the cost of
whatever it was doing. fleet_bench's ``--profile`` starts the server through this
launcher.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import sys
import threading
import time
from typing import Any, List

_PROFILES: List[cProfile.Profile] = []
_LOCK = threading.Lock()


def _profiled_run(original: Any) -> Any:
    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with _LOCK:
            _PROFILES.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    return run


def _write(path: str) -> None:
    with _LOCK:
        profiles = list(_PROFILES)
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        try:
            stats.add(profile)
        except TypeError:  # a profile still enabled in a thread that never ended
            continue
    stats.dump_stats(path)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1].startswith("-"):
        # Not a file to write over: a flag given first (``--help``) or nothing to run.
        sys.exit(__doc__.split("\n\n")[0] if __doc__ else "usage: STATS_FILE ARGUMENTS...")
    path = sys.argv.pop(1)
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    profile = cProfile.Profile(time.thread_time)
    _PROFILES.append(profile)
    atexit.register(_write, path)
    sys.argv[0] = "codedeploy-server"
    from server.entry import main as server_main

    profile.enable()
    try:
        server_main()
    finally:
        profile.disable()


if __name__ == "__main__":
    main()
