"""``python -m tests.support.bind_mount_exec SOURCE TARGET -- PROGRAM ARGS...``: bind-mount
SOURCE on TARGET, then become PROGRAM (same pid).

Run inside ``unshare --mount --propagation private``, it gives one process (and its
children: an agent and its hooks) a folder of its own at a path every "host" of a test
fleet shares, so that one revision installing to one absolute path lands in each host's
own folder.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(arguments: list[str]) -> None:
    source, target, separator, *program = arguments
    if separator != "--" or not program:
        sys.exit("usage: bind_mount_exec SOURCE TARGET -- PROGRAM [ARGS...]")
    subprocess.run(["mount", "--bind", source, target], check=True)
    os.execv(program[0], program)  # noqa: S606 - an argument list, as intended


if __name__ == "__main__":
    main(sys.argv[1:])
