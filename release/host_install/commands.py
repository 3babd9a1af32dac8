"""Running the programs the installer needs (systemctl, the agent, pip, the venv module).

Always an argument list, never a shell; everything a program says goes to the installer's
log; a program that cannot be started or does not answer in time is an
:class:`InstallError`, while its exit status is the caller's to judge.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Mapping, Optional, Sequence

from host_install.errors import InstallError

log = logging.getLogger("install")


def run_command(
    argv: Sequence[str], timeout: float = 120.0, env: Optional[Mapping[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """Run a program, log what it said, never raise for its exit status."""
    log.info("running %s", " ".join(argv))
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
        )
    except subprocess.TimeoutExpired:
        raise InstallError(f"{argv[0]} gave no answer within {timeout:g} seconds") from None
    except OSError as error:
        raise InstallError(f"cannot run {argv[0]}: {error.strerror or error}") from error
    for stream in (result.stdout, result.stderr):
        if stream.strip():
            log.info("%s", stream.strip())
    return result


def last_error_line(stderr: str, status: int) -> str:
    """The line of a program's error output that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.split(":", 1)[1].strip() for line in lines if line.startswith("ERROR:")]
    if any("No space left on device" in line for line in lines):
        return "no space left on device"
    return (errors or lines[-1:] or [f"exit status {status}"])[0]


def first_error_line(stderr: str, fallback: str) -> str:
    """A program's first line on stderr (the agent says what is wrong in one), or
    ``fallback`` when it said nothing."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[0] if lines else fallback
