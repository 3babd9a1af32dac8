"""Runs a command as on a host that systemd does not run: ``/run/systemd`` hidden.

``unshare --mount --propagation private -- python hide_systemd.py ARGV...`` (inside a
systemd box) mounts an empty tmpfs over ``/run/systemd`` in that private mount namespace,
where ``/run/systemd/system`` (what programs check to know that systemd runs the host) no
longer exists, then execs ``ARGV``. The rest of the box is unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(argv: list[str]) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/run/systemd"], check=True)
    os.execvp(argv[0], argv)  # noqa: S606 - an argument list, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
