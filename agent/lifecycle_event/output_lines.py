"""Turning a script's raw output into log lines, and letting go of pipes we stop reading.

Scripts write bytes in any encoding and of any length; the log wants whole UTF-8 lines of
bounded size as soon as they are complete. A line longer than :data:`MAX_LINE_BYTES` is cut
there (at a character boundary) and continues as the next line, so a script that writes a
gigabyte without a newline costs no more memory than one chunk.
"""

from __future__ import annotations

import contextlib
import threading
from typing import BinaryIO, Callable, Sequence

MAX_LINE_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024


class LineAssembler:
    """Collects one stream's bytes and hands each complete line (decoded) to ``emit``."""

    def __init__(
        self, stream: str, emit: Callable[[str, str], None], max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.stream = stream
        self._emit = emit
        self._max_line_bytes = max_line_bytes
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        self._pending += data
        while True:
            # A newline counts only within the line limit; beyond it the line is cut first.
            newline = self._pending.find(b"\n", 0, self._max_line_bytes + 1)
            if newline >= 0:
                line = bytes(self._pending[:newline])
                del self._pending[: newline + 1]
            elif len(self._pending) > self._max_line_bytes:
                cut = _character_boundary(self._pending, self._max_line_bytes)
                line = bytes(self._pending[:cut])
                del self._pending[:cut]
            else:
                return
            self._send(line)

    def finish(self) -> None:
        """The stream ended: a last line without a newline still counts."""
        if self._pending:
            line = bytes(self._pending)
            self._pending.clear()
            self._send(line)

    def _send(self, line: bytes) -> None:
        self._emit(self.stream, line.decode("utf-8", errors="replace"))


def drain_in_background(pipes: Sequence[BinaryIO]) -> None:
    """Keep reading (and discarding) pipes a background process still writes to.

    Closing them would kill that process with SIGPIPE at its next write, and not reading
    would block it once the pipe is full; it is usually the application, so neither is
    acceptable. The thread ends when the last writer closes the pipe.
    """
    for pipe in pipes:
        thread = threading.Thread(
            target=_discard_until_closed, args=(pipe,), name="hook-output-drain", daemon=True
        )
        thread.start()


def _discard_until_closed(pipe: BinaryIO) -> None:
    with contextlib.suppress(OSError, ValueError):
        while pipe.read(_READ_SIZE):
            pass
    with contextlib.suppress(OSError):
        pipe.close()


def _character_boundary(data: bytearray, limit: int) -> int:
    """The largest cut <= ``limit`` that does not split a UTF-8 sequence (or ``limit``)."""
    cut = limit
    # Continuation bytes look like 0b10xxxxxx; a sequence is at most four bytes long.
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit
