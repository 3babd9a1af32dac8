"""The daemon's retention: the group's oldest deployment folders go to the root's trash
and are removed there beside the deployments, and what an earlier run left in the trash
is removed once the daemon starts."""

from __future__ import annotations

import signal
from pathlib import Path

from agent.deployment_root.trash import TRASH_DIR
from tests.support.command_service import CommandServiceStub, completion_of, queue_deployment
from tests.support.daemon import AgentDaemon
from tests.support.signing import SigningKit
from tests.support.traced_revisions import make_revision, spec_json
from tests.support.waiting import wait_until


def test_pruned_folders_and_leftovers_are_removed_through_the_trash(
    tmp_path: Path, stub: CommandServiceStub, kit: SigningKit
) -> None:
    base = tmp_path / "agent"
    base.mkdir()
    daemon = AgentDaemon(base, stub, kit, extra_config=":max_revisions: 1\n")
    leftover = daemon.root.path / TRASH_DIR / "d-LEFTOVER.0badcafe" / "deployment-archive"
    leftover.mkdir(parents=True)
    (leftover / "file").write_bytes(b"left by a daemon that was stopped")
    revision = make_revision(base / "revision", daemon.trace, base / "www", events=())
    deployments = ["d-RETAIN0001", "d-RETAIN0002", "d-RETAIN0003"]
    process = daemon.run()
    for deployment_id in deployments:
        ids = queue_deployment(stub, deployment_id, kit.sign(spec_json(deployment_id, revision)))
        assert wait_until(lambda ids=ids: all(completion_of(stub, i) for i in ids))
        assert {completion_of(stub, i)[0]["CommandStatus"] for i in ids} == {"Succeeded"}
    group = daemon.root.group_dir("group-1")
    # The third deployment pruned the first (the second is the last successful one).
    assert sorted(p.name for p in group.iterdir()) == deployments[1:]
    assert wait_until(lambda: list((daemon.root.path / TRASH_DIR).iterdir()) == [])
    assert "old deployment folder moved to the trash" in daemon.log_file.read_text("utf-8")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
