"""The installer's one error family: the message is the line the operator sees."""

from __future__ import annotations


class InstallError(Exception):
    """A step cannot be done; ``message`` names what is wrong and, where it helps, what to
    do. The host is put back as it was before the error reaches the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
