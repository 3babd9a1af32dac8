"""Run one program and report its wall time, CPU time and true peak RSS: ``python
measured_run.py REPORT COMMAND...`` writes ``<seconds> <peak RSS KiB> <CPU seconds>`` to the
REPORT file and exits with the program's status. The CPU time (user and system, the
program's and that of the processes it waited for) moves far less than the wall time when
other work shares the machine.

Why a separate launcher: Linux charges a process that ``exec``s with the high-water mark of
the memory it ran in before, and Python's ``subprocess`` starts programs with ``vfork``, in
the parent's memory. A program a benchmark starts directly therefore reports at least the
benchmark's own peak (50 to 100 MB, with boto3 and the test harnesses loaded), not its own.
This launcher is a bare interpreter (about 10 MB): what the program reports through it is
its own peak (and its children's), or 10 MB when it is smaller than that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any, List, NamedTuple

_HERE = os.path.abspath(__file__)


class Measured(NamedTuple):
    seconds: float
    peak_rss_kib: int
    returncode: int
    output: str  # what the program printed, when captured as text
    cpu_seconds: float  # user + system, with the processes the program waited for


def run_measured(command: List[str], **popen_options: Any) -> Measured:
    """Run ``command`` through this launcher (``popen_options`` go to ``subprocess.run``:
    cwd, env, stdout...); its wall time from fork to exit, its own peak RSS and its CPU
    time."""
    with tempfile.NamedTemporaryFile("r", encoding="ascii", suffix=".measured") as report:
        done = subprocess.run(
            [sys.executable, _HERE, report.name, *command], check=False, **popen_options
        )
        seconds, peak, cpu = report.read().split()
    output = f"{done.stdout or ''}{done.stderr or ''}" if popen_options.get("text") else ""
    return Measured(float(seconds), int(peak), done.returncode, output, float(cpu))


def main() -> int:
    report, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 - an argument list, no shell
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    with open(report, "w", encoding="ascii") as out:
        cpu = usage.ru_utime + usage.ru_stime
        out.write(f"{seconds:.6f} {usage.ru_maxrss} {cpu:.6f}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
