"""The daemon reads a revision's appspec once: the no-op check before the acknowledgement
and the run after it share one reading, and so do the later commands of the deployment,
unless the file changed in between.

The reads are counted with inotify on the appspec file, as the kernel sees them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import struct
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from agent.command_poller.poller import poll_once
from tests.support.command_service import (
    HOST,
    CommandServiceStub,
    RecordedRequest,
    acknowledgements_of,
    client_for,
    completion_of,
    queue_deployment,
)
from tests.support.poller_host import Host, run_loop_until_completed
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json

_IN_OPEN = 0x20
# Watched too: the kernel merges an event into an identical one not read yet, so two
# opens in a row would count as one; a close between them keeps them apart.
_IN_CLOSE_NOWRITE = 0x10
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
DEPLOYMENT = "d-APPSPEC01"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


class FileOpens:
    """Counts the opens of one file through inotify."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._descriptor = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        assert self._descriptor >= 0, os.strerror(ctypes.get_errno())
        watch = libc.inotify_add_watch(
            self._descriptor, os.fsencode(path), _IN_OPEN | _IN_CLOSE_NOWRITE
        )
        assert watch >= 0, os.strerror(ctypes.get_errno())

    def count(self) -> int:
        opens = 0
        while True:
            try:
                data = os.read(self._descriptor, 65536)
            except BlockingIOError:
                return opens
            offset = 0
            while offset < len(data):
                _, mask, _, name_length = _EVENT_HEADER.unpack_from(data, offset)
                opens += 1 if mask & _IN_OPEN else 0
                offset += _EVENT_HEADER.size + name_length

    def close(self) -> None:
        os.close(self._descriptor)


@contextlib.contextmanager
def opens_of(path: Path) -> Iterator[FileOpens]:
    watch = FileOpens(path)
    try:
        yield watch
    finally:
        watch.close()


class AppspecChangingStub(CommandServiceStub):
    """The command service, rewriting a file when an acknowledgement arrives: the moment
    between the agent's no-op check and its run."""

    def __init__(self) -> None:
        super().__init__(hang_seconds=5)
        self.on_ack: Optional[Path] = None
        self.new_text = ""

    def _record(self, request: RecordedRequest) -> None:
        super()._record(request)
        if request.operation == "PutHostCommandAcknowledgement" and self.on_ack is not None:
            self.on_ack.write_text(self.new_text, encoding="utf-8")


def deploy_until_after_install(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> Tuple[List[str], Path]:
    """DownloadBundle and Install run; AfterInstall is queued. Returns the command ids and
    the appspec AfterInstall reads (in this deployment's own unpacked revision)."""
    revision = make_revision(
        host.base / "revision",
        host.trace,
        host.destination,
        scripts={"ApplicationStart": f'echo "the other script" >> "{host.trace}"'},
    )
    ids = queue_deployment(
        stub,
        DEPLOYMENT,
        kit.sign(spec_json(DEPLOYMENT, revision)),
        commands=("DownloadBundle", "Install", "AfterInstall"),
    )
    client = client_for(stub)
    for _ in range(2):
        assert poll_once(client, host.settings(kit), rng=random.Random(1)).command is not None
    appspec = host.root.path / "group-1" / DEPLOYMENT / "deployment-archive" / "appspec.yml"
    assert appspec.is_file()
    return ids, appspec


def test_a_command_reads_its_appspec_once(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> None:
    ids, appspec = deploy_until_after_install(stub, host, kit)
    with opens_of(appspec) as opens:
        poll_once(client_for(stub), host.settings(kit), rng=random.Random(1))
        assert opens.count() == 1
    assert completion_of(stub, ids[2])[0]["CommandStatus"] == "Succeeded"
    assert acknowledgements_of(stub, ids[2]) == [False]
    assert host.trace_lines() == [f"AfterInstall {DEPLOYMENT}"]


def test_an_appspec_changed_after_the_no_op_check_is_read_again(
    host: Host, kit: SigningKit
) -> None:
    with AppspecChangingStub() as stub:
        ids, appspec = deploy_until_after_install(stub, host, kit)
        changed = appspec.read_text(encoding="utf-8").replace(
            "scripts/AfterInstall.sh", "scripts/ApplicationStart.sh"
        )
        stub.on_ack, stub.new_text = appspec, changed
        poll_once(client_for(stub), host.settings(kit), rng=random.Random(1))
        assert completion_of(stub, ids[2])[0]["CommandStatus"] == "Succeeded"
    # The script the file names at the run is the one that ran.
    assert host.trace_lines() == [f"AfterInstall {DEPLOYMENT}", "the other script"]


def test_the_commands_of_a_deployment_parse_its_appspec_once(
    stub: CommandServiceStub, host: Host, kit: SigningKit
) -> None:
    ids, appspec = deploy_until_after_install(stub, host, kit)
    ids.append(stub.queue_command(HOST, "ApplicationStart", DEPLOYMENT)["HostCommandIdentifier"])
    with opens_of(appspec) as opens:
        run_loop_until_completed(stub, host.settings(kit), len(ids))
        assert opens.count() == 1
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids[2:]] == ["Succeeded"] * 2
    assert host.trace_lines() == [
        f"AfterInstall {DEPLOYMENT}",
        f"ApplicationStart {DEPLOYMENT}",
        "the other script",
    ]
