"""One deployment at a time per group: real codedeploy-local processes on one group.

The first deployment's BeforeInstall hook holds it until the test lets it go, so the
second one starts while the first is mid-way: it waits with one line (or, with
``--no-wait``, is refused with one line), and the hooks of the two never interleave.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

from tests.support.local_agent import LocalAgent
from tests.support.traced_revisions import make_revision
from tests.support.waiting import wait_until


class Held:
    """A revision whose BeforeInstall hook waits (at most a minute) for a release file."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.trace = base / "trace.log"
        self.started = base / "hook-started"
        self.release = base / "release"
        self.hook_pid = base / "hook.pid"
        wait = (
            f'echo $$ > "{self.hook_pid}"\ntouch "{self.started}"\n'
            f'i=0; while [ ! -e "{self.release}" ] && [ $i -lt 1200 ]; do'
            " sleep 0.05; i=$((i+1)); done\n"
        )
        self.revision = make_revision(
            base / "revision", self.trace, base / "www", scripts={"BeforeInstall": wait}
        )

    def trace_ids(self) -> List[str]:
        return [line.split()[1] for line in self.trace.read_text(encoding="utf-8").splitlines()]


def _start(agent: LocalAgent, held: Held, name: str, *extra: str) -> subprocess.Popen[str]:
    err = (agent.base / f"{name}.err").open("w", encoding="utf-8")
    out = (agent.base / f"{name}.out").open("w", encoding="utf-8")
    process = agent.start(
        "--bundle-location",
        str(held.revision),
        "--file-exists-behavior",
        "OVERWRITE",
        *extra,
        stdout=out,
        stderr=err,
    )
    err.close()
    out.close()
    return process


def _text(agent: LocalAgent, name: str) -> str:
    return (agent.base / name).read_text(encoding="utf-8")


@contextlib.contextmanager
def _first_holding(agent: LocalAgent, held: Held) -> Iterator[subprocess.Popen[str]]:
    """A first deployment, stopped in its BeforeInstall hook until the block ends."""
    first = _start(agent, held, "first")
    try:
        assert wait_until(held.started.exists)
        yield first
    finally:
        held.release.touch()
        first.wait(timeout=120)
    assert first.returncode == 0, _text(agent, "first.err")


def _grouped(ids: List[str]) -> bool:
    """Whether each deployment's hook lines are all together (no interleaving)."""
    runs: Dict[str, int] = {}
    for position, current in enumerate(ids):
        if position == 0 or ids[position - 1] != current:
            runs[current] = runs.get(current, 0) + 1
    return all(count == 1 for count in runs.values())


def test_a_second_deployment_of_the_group_waits_for_the_first_and_both_succeed(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    held = Held(tmp_path)
    with _first_holding(local_agent, held) as first:
        second = _start(local_agent, held, "second")
        try:
            assert wait_until(lambda: "waiting for" in _text(local_agent, "second.err"))
        finally:
            held.release.touch()
            assert second.wait(timeout=120) == 0, _text(local_agent, "second.err")
    waiting = _text(local_agent, "second.err").splitlines()[0]
    first_id = _text(local_agent, "first.out").split("Deployment ")[1].split()[0]
    assert waiting == (
        f"codedeploy-local: waiting for deployment {first_id} (codedeploy-local, pid"
        f" {first.pid}) to finish with deployment group default-local-deployment-group"
    )
    ids = held.trace_ids()
    assert len(set(ids)) == 2 and ids[0] == first_id
    assert _grouped(ids), ids


def test_no_wait_refuses_at_once_with_one_line_naming_the_running_deployment(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    held = Held(tmp_path)
    with _first_holding(local_agent, held) as first:
        refused = local_agent.run("--bundle-location", str(held.revision), "--no-wait")
        assert refused.returncode == 2
        assert refused.stdout == ""
        [line] = refused.stderr.splitlines()
        assert line.startswith(
            "codedeploy-local: deployment group default-local-deployment-group is being"
            " deployed by deployment d-"
        )
        assert f"(codedeploy-local, pid {first.pid})" in line
    assert len(set(held.trace_ids())) == 1


def test_a_killed_holder_leaves_no_stale_lock(local_agent: LocalAgent, tmp_path: Path) -> None:
    held = Held(tmp_path)
    first = _start(local_agent, held, "first")
    try:
        assert wait_until(held.started.exists)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        held.release.touch()  # lets the orphaned hook end
    hook_pid = int(held.hook_pid.read_text(encoding="utf-8"))
    assert wait_until(lambda: not Path(f"/proc/{hook_pid}").exists() or _zombie(hook_pid))
    held.release.unlink()
    held.started.unlink()
    second = _start(local_agent, held, "second", "--no-wait")
    assert wait_until(held.started.exists)
    held.release.touch()
    assert second.wait(timeout=120) == 0, _text(local_agent, "second.err")
    assert "waiting" not in _text(local_agent, "second.err")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_lock_file_sits_beside_the_group_s_instructions_and_is_not_inherited(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    held = Held(tmp_path)
    with _first_holding(local_agent, held) as first:
        hook_pid = held.hook_pid.read_text(encoding="utf-8").strip()
        lock = local_agent.root / "deployment-instructions" / "default-local-deployment-group.lock"
        assert lock.read_text(encoding="utf-8").split()[0] == str(first.pid)
        hook_files = {os.path.realpath(f) for f in Path(f"/proc/{hook_pid}/fd").iterdir()}
        assert str(lock) not in hook_files


def test_ctrl_c_while_waiting_is_one_line_and_130(local_agent: LocalAgent, tmp_path: Path) -> None:
    held = Held(tmp_path)
    with _first_holding(local_agent, held):
        second = _start(local_agent, held, "second")
        assert wait_until(lambda: "waiting for" in _text(local_agent, "second.err"))
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 130
        lines = _text(local_agent, "second.err").splitlines()
        assert len(lines) == 2 and lines[1].endswith("interrupted before it started"), lines
    assert len(set(held.trace_ids())) == 1
