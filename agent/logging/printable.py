"""Rendering text from outside (hook output, process names, file names) safe for a terminal.

A hook can print a carriage return, a clear-screen sequence or a window-title escape, and
those can end up in the agent's own log lines and in ``codedeploy-agent status`` (through
an error message, a process's command line, a script's file name). Shown raw they rewrite
what an operator sees in a terminal, or hide a line of the log. Here every control
character becomes a visible escape (``\\r``, ``\\x1b``, ``\\u202e``); the script logs keep
the raw bytes, as the AWS agent writes them.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls but tab, DEL, C1 controls (8-bit CSI and friends), and the Unicode line
# separators and bidirectional overrides that reorder or break what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    character = match.group(0)
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control_characters(text: str) -> str:
    """``text`` with every control character written as a visible escape; tab is kept."""
    return _CONTROL.sub(_escape, text)


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space) and
    at most ``limit`` characters, an ellipsis marking a cut: a message from outside (a
    service's error, an exception) quoted in one of ours."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
