"""The service manager's end of ``NOTIFY_SOCKET``: a unix datagram socket that collects
what a daemon tells systemd (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``),
so that a test checks the notify protocol without a systemd."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Pattern, Union


class NotifyReceiver:
    """The service manager's end of ``NOTIFY_SOCKET``: every datagram the daemon sends."""

    def __init__(self, address: Path) -> None:
        self.address = address
        self.messages: List[str] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(address))
        self._socket.settimeout(0.2)

    def receive_until(self, wanted: Union[Pattern[str], str], timeout: float = 30.0) -> str:
        """The first message (received so far or later) that starts with ``wanted`` (a
        text) or matches it (a pattern); fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if message.startswith(wanted) if isinstance(wanted, str) else wanted.match(message):
                    return message
            seen = len(self.messages)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {wanted!r} among {self.messages}")
            with contextlib.suppress(socket.timeout):
                self.messages.append(self._socket.recv(65536).decode("utf-8"))

    def count(self, prefix: str) -> int:
        """How many messages received so far start with ``prefix``."""
        return sum(1 for message in self.messages if message.startswith(prefix))

    def receive_count(self, prefix: str, count: int, timeout: float = 30.0) -> bool:
        """Receive until ``count`` messages start with ``prefix``; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.count(prefix) < count and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                self.messages.append(self._socket.recv(65536).decode("utf-8"))
        return self.count(prefix) >= count

    def close(self) -> None:
        self._socket.close()


@contextlib.contextmanager
def notify_receiver() -> Iterator[NotifyReceiver]:
    """A receiver bound in a new folder of /tmp, closed and removed at the end."""
    # A unix socket path is at most 107 bytes: pytest's folders can be longer.
    folder = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    receiver = NotifyReceiver(folder / "notify")
    try:
        yield receiver
    finally:
        receiver.close()
        receiver.address.unlink(missing_ok=True)
        folder.rmdir()
