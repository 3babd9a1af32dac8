"""The argument parser of both programs: a refused command line is one line, exit 2.

argparse prints its usage block and then the error; the README promises one clear line
for every refusal, so the error names the problem and points at ``--help`` instead. The
help keeps the layout of its epilog (verbs, exit statuses, where the logs are).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusals are ``<prog>: <problem> (see <prog> --help)``."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: {line} (see {self.prog} --help)\n")
