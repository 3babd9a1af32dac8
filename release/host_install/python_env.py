"""The agent's own virtual environment, built from the bundle's wheels with no network.

The bundle's wheels are for one CPython (its tag, e.g. cp311), so the environment is made
with that Python, found on the host; the installer itself may run on another. The
environment never sees the system's site packages, and pip runs from the wheel the bundle
carries (``tools/pip-*.whl``) with ``--isolated --no-index``: no pip configuration, no index,
no ``ensurepip`` (which some distributions ship apart), only the bundle's files.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

from host_install.bundle import Bundle
from host_install.commands import last_error_line, run_command
from host_install.errors import InstallError

log = logging.getLogger("install")

_SEARCH_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")


def _python_version_of(python: str) -> Optional[str]:
    try:
        result = subprocess.run(
            [
                python,
                "-E",
                "-s",
                "-c",
                "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = result.stdout.split()
    if result.returncode != 0 or len(parts) != 2 or parts[0] != "cpython":
        return None
    return parts[1]


def find_python_for(bundle: Bundle, running: str, path: str) -> str:
    """A CPython of the bundle's version on this host, or one line naming what is missing."""
    wanted = bundle.python_version or f"{bundle.python_tag[2]}.{bundle.python_tag[3:]}"
    candidates: List[str] = [running]
    for folder in [*path.split(os.pathsep), *_SEARCH_DIRS]:
        if folder:
            candidates += [os.path.join(folder, f"python{wanted}"), os.path.join(folder, "python3")]
    seen: List[str] = []
    for candidate in candidates:
        if not os.access(candidate, os.X_OK) or candidate in seen:
            continue
        seen.append(candidate)
        version = _python_version_of(candidate)
        if version == wanted:
            return candidate
    raise InstallError(
        f"this bundle is for CPython {wanted} ({bundle.python_tag}) and this host has no"
        f" python{wanted}: install it (e.g. dnf install python{wanted}) or use a bundle built"
        f" for this host's Python ({_python_version_of(running) or 'unknown'})"
    )


def _run_on_disk(argv: Sequence[str], what: str, timeout: float = 900.0) -> str:
    """Run a step of building the environment; its failure is one line naming the step."""
    result = run_command(argv, timeout=timeout, env=_clean_environment())
    if result.returncode != 0:
        raise InstallError(f"cannot {what}: {last_error_line(result.stderr, result.returncode)}")
    return result.stdout


def _clean_environment() -> dict[str, str]:
    """What pip and the venv module see: no PIP_* or PYTHON* settings of the caller's."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def build_environment_on_disk(
    bundle: Bundle, python: str, target: Path, extras: Sequence[str] = ()
) -> None:
    """Create the virtual environment ``target`` and install the agent into it (with the
    project's ``extras``), offline. On failure nothing of ``target`` is left."""
    try:
        if bundle.pip_wheel is not None:
            _run_on_disk(
                [python, "-E", "-s", "-m", "venv", "--without-pip", str(target)],
                "create the virtual environment",
            )
        else:
            _run_on_disk(
                [python, "-E", "-s", "-m", "venv", str(target)], "create the virtual environment"
            )
        install_wheels_on_disk(bundle, target, extras)
        shown = _run_on_disk(
            [str(target / "bin" / "codedeploy-agent"), "--version"], "run the installed agent"
        )
        if bundle.version not in shown:
            raise InstallError(
                f"the installed agent says {shown.strip()!r}, not version {bundle.version}"
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def install_wheels_on_disk(bundle: Bundle, target: Path, extras: Sequence[str] = ()) -> None:
    """Install the project's wheel with ``extras`` into the environment ``target`` from the
    bundle's wheelhouse only; what is there already is left as it is."""
    if bundle.pip_wheel is not None:
        pip = [str(target / "bin" / "python"), str(bundle.pip_wheel / "pip")]
    else:
        pip = [str(target / "bin" / "python"), "-m", "pip"]
    wanted = f"{bundle.wheel}[{','.join(extras)}]" if extras else str(bundle.wheel)
    _run_on_disk(
        [
            *pip,
            "install",
            "--isolated",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--quiet",
            "--find-links",
            str(bundle.wheelhouse),
            wanted,
        ],
        "install the agent's wheels" if not extras else f"install the {'/'.join(extras)} wheels",
    )
