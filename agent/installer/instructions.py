"""The install log, ``<group-id>-install.json``: what the install did, in the order it did it.

The format is the AWS agent's (``{"instructions": [...]}``, docs/behaviour.md section 4), one
instruction per line so that it can be read with grep. It is streamed to a file beside the
final one and renamed into place when closed, so a reader never sees half a log and the
install never holds every instruction in memory.
"""

from __future__ import annotations

import json
import os
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Optional, Sequence, Type

from agent.application_specification.model import SelinuxContext

_PARTIAL_SUFFIX = ".partial"


class InstructionsFileWriter:
    """Writes the install log as instructions are carried out; ``close`` publishes it."""

    def __init__(self, install_file: Path) -> None:
        self.path = install_file
        self._partial = install_file.with_name(install_file.name + _PARTIAL_SUFFIX)
        self._handle = self._partial.open("w", encoding="utf-8", newline="\n")
        self._handle.write('{"instructions":[')
        self._separator = "\n"

    def mkdir(self, directory: str) -> None:
        self._write('{"type":"mkdir","directory":' + _text(directory) + "}")

    def copy(self, source: str, destination: str) -> None:
        # Once per installed file: one string, one buffered write.
        self._write(
            f'{{"type":"copy","source":{_text(source)},"destination":{_text(destination)}}}'
        )

    def chmod(self, path: str, mode_text: str) -> None:
        self._write('{"type":"chmod","mode":' + _text(mode_text) + ',"file":' + _text(path) + "}")

    def chown(self, path: str, owner: Optional[str], group: Optional[str]) -> None:
        self._write(_record("chown", owner=owner, group=group, file=path))

    def setfacl(self, path: str, acl: Sequence[str]) -> None:
        self._write(_record("setfacl", acl=list(acl), file=path))

    def semanage(self, path: str, context: SelinuxContext) -> None:
        rendered = {
            "user": context.name,
            "role": None,
            "type": context.type,
            "range": None if context.range is None else context.range.render(),
        }
        self._write(_record("semanage", context=rendered, file=path))

    def _write(self, instruction: str) -> None:
        self._handle.write(self._separator + instruction)
        self._separator = ",\n"

    def flush(self) -> None:
        self._handle.flush()

    def fragment_path(self) -> str:
        """Where a second copying process writes its share of the instructions."""
        return str(self._partial) + ".worker"

    def append_fragment_from_disk(self, fragment: str) -> None:
        """Take in the instructions another process wrote, one per line, after ours."""
        with open(fragment, encoding="utf-8", newline="\n") as lines:
            for line in lines:
                self._write(line.rstrip("\n"))

    def close(self) -> None:
        """Finish the JSON document and rename it over the previous install log."""
        if self._handle.closed:
            return
        self._handle.write("\n]}\n")
        self._handle.close()
        os.replace(self._partial, self.path)

    def __enter__(self) -> InstructionsFileWriter:
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: object, trace: object) -> None:
        # Also on failure: once the previous revision is gone, the log of what this install
        # did is the truth an operator needs.
        self.close()


# A JSON string, as json.dumps writes one (ASCII, escapes included), without its dispatch:
# two per installed file.
_text = encode_basestring_ascii


def _record(kind: str, **fields: object) -> str:
    # Keys keep the AWS agent's order: type first, then the fields as given.
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


class InstructionsFragmentWriter(InstructionsFileWriter):
    """Instructions of one share of the copy, one per line, for the main writer to take in."""

    def __init__(self, fragment: str) -> None:
        self.path = Path(fragment)
        self._partial = self.path
        self._handle = open(fragment, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._separator = ""

    def _write(self, instruction: str) -> None:
        self._handle.write(instruction + "\n")

    def close(self) -> None:
        self._handle.close()
