"""Talking to systemd through ``$NOTIFY_SOCKET`` (the sd_notify protocol), with no library.

A ``Type=notify`` unit learns that the daemon is ready (``READY=1``), what it is doing
(``STATUS=...``, shown by ``systemctl status``), that it is alive (``WATCHDOG=1``) and that
it is stopping (``STOPPING=1``): each is one datagram on a unix socket whose address is in
the environment. Without the variable (no systemd) every call does nothing.
"""

from __future__ import annotations

import socket
from typing import Mapping, Optional

from agent.logging.printable import escape_control_characters

NOTIFY_SOCKET_VARIABLE = "NOTIFY_SOCKET"
WATCHDOG_USEC_VARIABLE = "WATCHDOG_USEC"
WATCHDOG_PID_VARIABLE = "WATCHDOG_PID"
WATCHDOG_PING_MIN_SECONDS = 0.1
WATCHDOG_PING_MAX_SECONDS = 600.0


def notify_systemd(message: str, environ: Mapping[str, str]) -> bool:
    """Send one notification (network: a datagram); False when there is no socket or it fails."""
    address = environ.get(NOTIFY_SOCKET_VARIABLE, "")
    if not address or address[0] not in ("/", "@"):
        return False
    if address[0] == "@":
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as connection:
            connection.sendto(message.encode("utf-8", "replace"), address)
    except OSError:
        return False
    return True


def status_message(line: str) -> str:
    """A ``STATUS=`` notification; the status is one line, so newlines become spaces, and
    other control characters (a hook's terminal escapes) are shown escaped."""
    return "STATUS=" + escape_control_characters(" ".join(line.split()))


def watchdog_interval_seconds(environ: Mapping[str, str], pid: int) -> Optional[float]:
    """How often to ping the watchdog (half its timeout), or None when it is not armed
    for process ``pid``."""
    watched = environ.get(WATCHDOG_PID_VARIABLE, "").strip()
    if watched and watched != str(pid):
        return None
    raw = environ.get(WATCHDOG_USEC_VARIABLE, "").strip()
    try:
        microseconds = int(raw) if len(raw) <= 20 else 0
    except ValueError:
        return None
    if microseconds <= 0:
        return None
    # Pinging more often than needed is harmless; a wait of ages overflows the timer, and
    # a wait of nothing spins.
    return min(max(microseconds / 2_000_000, WATCHDOG_PING_MIN_SECONDS), WATCHDOG_PING_MAX_SECONDS)
