"""Entry point of the installer: ``python3 -E -s host_install/__main__.py ...``.

``scripts/install`` (POSIX sh) runs this file by path with the first Python 3.9 or newer it
finds. Run that way, Python puts this folder first on ``sys.path``, where a module of ours
could shadow one of the standard library; so the first thing done here is to put the
folder *above* it there instead, then import the package.
"""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from host_install.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
