"""The daemon's Install of a large tree runs in a single-threaded helper process, so that
the tree is planned and copied by two processes there as in ``codedeploy-local``; a small
tree is installed in the daemon's own process; the helper dies with the daemon, and a
failure in it is one line with its code, with nothing installed.
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path
from typing import Iterator, List, Tuple

from agent.installer.install_process import HELPER_MIN_ENTRIES, serve_one_install
from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.processes import children_with_marker
from tests.support.s3_servers import StubObject, stub_s3_server
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json, tgz_revision
from tests.support.waiting import wait_until

_HELPER_LINE = re.compile(
    r"install ran in a helper process\s+helper_pid=(\d+) second_processes=(\d+)"
    r" succeeded=(True|False)"
)


def _revision_with_folders(daemon: AgentDaemon, destination: Path) -> Path:
    """A revision whose ``content`` holds four folders: enough for the install to split,
    and enough entries (with the ``extra`` folder's) for the daemon to use its helper."""
    revision = make_revision(
        daemon.base / "revision",
        daemon.trace,
        destination,
        events=("BeforeInstall",),
    )
    for folder in ("a", "b", "c", "d"):
        (revision / "content" / folder).mkdir()
        for index in range(3):
            (revision / "content" / folder / f"file{index}.txt").write_text(
                f"{folder} {index}\n", encoding="utf-8"
            )
    _add_files(revision / "extra", HELPER_MIN_ENTRIES)
    return revision


def _add_files(folder: Path, count: int) -> None:
    """``count`` empty files in ``folder``, outside what the appspec installs."""
    folder.mkdir()
    for index in range(count):
        (folder / f"f{index}").touch()


def _helper_lines(daemon: AgentDaemon) -> List[re.Match[str]]:
    return list(_HELPER_LINE.finditer(daemon.log_file.read_text(encoding="utf-8")))


def _has_ended(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie (when this test process is a child
    subreaper, as in-process hook tests make it, the orphan waits here to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return True
    return re.search(r"^State:\s+Z", status, re.MULTILINE) is not None


def _helpers_of(daemon_pid: int) -> List[int]:
    """The install helpers the daemon ``daemon_pid`` started."""
    return children_with_marker(daemon_pid, serve_one_install.__name__)


def test_the_daemons_install_runs_in_a_helper_that_splits_the_tree(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    destination = agent_daemon.base / "www"
    revision = _revision_with_folders(agent_daemon, destination)
    ids = queue_deployment(
        stub,
        "d-HELPER001",
        kit.sign(spec_json("d-HELPER001", revision)),
        commands=("DownloadBundle", "BeforeInstall", "Install"),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), process.stderr
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 3
    [line] = _helper_lines(agent_daemon)
    helper_pid, second_processes, succeeded = line.groups()
    assert int(helper_pid) != process.pid
    # The plan, the space count and the copy each handed half of the tree to a worker.
    assert int(second_processes) >= 1
    assert succeeded == "True"
    for folder in ("a", "b", "c", "d"):
        for index in range(3):
            path = destination / folder / f"file{index}.txt"
            assert path.read_text(encoding="utf-8") == f"{folder} {index}\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_a_conflict_found_by_the_worker_is_one_line_and_installs_nothing(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    destination = agent_daemon.base / "www"
    revision = _revision_with_folders(agent_daemon, destination)
    # The top level is split every other child: "b" (the second) is the worker's.
    foreign = destination / "b" / "file2.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("not ours\n", encoding="utf-8")
    ids = queue_deployment(
        stub,
        "d-HELPER002",
        kit.sign(
            spec_json(
                "d-HELPER002",
                revision,
                AgentActionOverrides={"AgentOverrides": {"FileExistsBehavior": "DISALLOW"}},
            )
        ),
        commands=("DownloadBundle", "Install"),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), process.stderr
    [download], [install] = (completion_of(stub, i) for i in ids)
    assert download["CommandStatus"] == "Succeeded"
    assert install["CommandStatus"] == "Failed"
    payload = install["payload"]
    assert isinstance(payload, dict)
    assert payload["error_code"] == 5
    message = str(payload["message"])
    assert "\n" not in message and str(foreign) in message, message
    [line] = _helper_lines(agent_daemon)
    assert int(line.group(2)) >= 1 and line.group(3) == "False"
    # Nothing was copied, by either process.
    assert sorted(str(p.relative_to(destination)) for p in destination.rglob("*")) == [
        "b",
        "b/file2.txt",
    ]
    assert foreign.read_text(encoding="utf-8") == "not ours\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@contextlib.contextmanager
def _held_s3_deployment(
    base: Path,
    stub: CommandServiceStub,
    kit: SigningKit,
    served: StubObject,
    deployment_id: str,
    commands: Tuple[str, ...],
) -> Iterator[Tuple[AgentDaemon, List[str]]]:
    """A daemon whose S3 endpoint serves ``served`` (holding part of its body until it is
    released), and a deployment of ``commands`` of that object queued for it."""
    with stub_s3_server(served) as endpoint:
        daemon = AgentDaemon(base, stub, kit, extra_config=f":s3_endpoint_override: '{endpoint}'\n")
        try:
            revision = {
                "RevisionType": "S3",
                "S3Revision": {"Bucket": served.bucket, "Key": served.key, "BundleType": "tgz"},
            }
            ids = queue_deployment(
                stub,
                deployment_id,
                kit.sign(spec_json(deployment_id, Path("/unused"), Revision=revision)),
                commands=commands,
            )
            yield daemon, ids
        finally:
            served.release.set()
            daemon.cleanup()


def test_a_slow_download_starts_the_helper_ahead_and_it_dies_with_the_daemon(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    bundle = tgz_revision(tmp_path / "trace.log", tmp_path / "www", "held", ("BeforeInstall",))
    # The S3 stub sends part of the bundle and holds the rest: the download stays running.
    served = StubObject("revisions", "app.tgz", bundle, hold_after=len(bundle) // 2)
    commands = ("DownloadBundle", "Install")
    with _held_s3_deployment(tmp_path, stub, kit, served, "d-HELPER003", commands) as (daemon, _):
        process = daemon.run()
        # The download has gone on long enough: the Install's helper waits for its request.
        assert wait_until(lambda: bool(_helpers_of(process.pid))), daemon.logs()
        helpers = _helpers_of(process.pid)
        assert len(helpers) == 1
        process.kill()
        process.wait(timeout=30)
        assert wait_until(lambda: _has_ended(helpers[0]), timeout=10)


def test_a_helper_started_ahead_is_ended_when_the_download_fails(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    # Not a tgz: the unpack refuses it once the held download is let go.
    served = StubObject("revisions", "app.tgz", b"not a bundle\n" * 4096, hold_after=1024)
    with _held_s3_deployment(tmp_path, stub, kit, served, "d-HELPER005", ("DownloadBundle",)) as (
        daemon,
        [download],
    ):
        process = daemon.run()
        assert wait_until(lambda: bool(_helpers_of(process.pid))), daemon.logs()
        served.release.set()
        assert wait_until(lambda: bool(completion_of(stub, download))), daemon.logs()
        assert completion_of(stub, download)[0]["CommandStatus"] == "Failed"
        # No Install follows a failed DownloadBundle: its helper is not left waiting.
        assert _helpers_of(process.pid) == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_a_small_tree_is_installed_in_the_daemons_own_process(
    agent_daemon: AgentDaemon, stub: CommandServiceStub, kit: SigningKit
) -> None:
    destination = agent_daemon.base / "www"
    revision = make_revision(
        agent_daemon.base / "revision", agent_daemon.trace, destination, events=()
    )
    _add_files(revision / "content" / "more", HELPER_MIN_ENTRIES // 2)
    ids = queue_deployment(
        stub,
        "d-HELPER004",
        kit.sign(spec_json("d-HELPER004", revision)),
        commands=("DownloadBundle", "Install"),
    )
    process = agent_daemon.run()
    assert wait_until(lambda: all(completion_of(stub, i) for i in ids)), process.stderr
    assert [completion_of(stub, i)[0]["CommandStatus"] for i in ids] == ["Succeeded"] * 2
    assert len(list((destination / "more").iterdir())) == HELPER_MIN_ENTRIES // 2
    # No helper served it, and none is left waiting.
    assert _helper_lines(agent_daemon) == []
    assert "revision installed" in agent_daemon.logs()
    assert _helpers_of(process.pid) == []
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
