"""String helpers for absolute, normalised POSIX paths, used in the install's hot loops.

The installer compares and joins paths as plain strings (not pathlib objects) because
it does so once or twice for every file of a revision.
"""

from __future__ import annotations

import os
from typing import List


def join(directory: str, name: str) -> str:
    """``directory/name`` without doubling the slash of ``/``."""
    return directory + name if directory.endswith("/") else directory + "/" + name


def normalise_absolute(path: str) -> str:
    """``path`` without ``.``/``..``/repeated slashes (POSIX keeps a leading ``//``; we don't)."""
    normalised = os.path.normpath(path)
    return "/" + normalised.lstrip("/") if normalised.startswith("//") else normalised


def is_within(path: str, ancestor: str) -> bool:
    """True when ``path`` is ``ancestor`` itself or lies below it."""
    if ancestor == "/":
        return path.startswith("/")
    return path == ancestor or path.startswith(ancestor + "/")


def folder_chain(path: str) -> List[str]:
    """Every folder from the top down to ``path`` itself, ``/`` excluded.

    ``/a/b/c`` gives ``["/a", "/a/b", "/a/b/c"]``; ``/`` gives ``[]``.
    """
    chain: List[str] = []
    current = path
    while current != "/":
        chain.append(current)
        current = os.path.dirname(current)
    chain.reverse()
    return chain
