"""Running an event's scripts for real: output, environment, failures, timeouts, containment.

Every test writes real scripts into a revision folder and runs them as real processes.
Processes a test starts carry a marker unique to the test in their command line, and the
``leftovers`` fixture kills whatever still carries it when the test ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import psutil
import pytest

from agent.application_specification.model import HookScript
from agent.errors import LOG_TAIL_CHARACTERS, ErrorCode
from agent.lifecycle_event.process_tree import create_hook_cgroup
from agent.lifecycle_event.runner import (
    HookRunSettings,
    LifecycleEventError,
    OutputsLeftOpenPolicy,
    ScriptLog,
    open_script_log,
    run_event_scripts,
)

# Far longer than any test may take; a process still sleeping this long escaped us.
LONG_SLEEP = 600
# Generous bounds that only a wrong behaviour (waiting for a sleep or the timeout) exceeds.
FAST_ENOUGH_SECONDS = 20.0


@dataclass
class Leftovers:
    """The marker of this test's processes; everything carrying it is killed at the end."""

    marker: str

    def processes(self) -> List[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            command = " ".join(process.info.get("cmdline") or [])
            if self.marker in command and process.pid != os.getpid():
                found.append(process)
        return found

    def kill_all(self) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.kill()


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    found = Leftovers(f"cdtest-{uuid.uuid4().hex}")
    try:
        yield found
    finally:
        found.kill_all()


@dataclass
class Revision:
    root: Path
    out: Path
    deployment: Path

    def script(self, location: str, body: str, mode: int = 0o755) -> HookScript:
        path = self.root / location
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        path.chmod(mode)
        return HookScript(location=location)

    @property
    def script_log_path(self) -> Path:
        return self.deployment / "logs" / "scripts.log"

    @property
    def deployments_log_path(self) -> Path:
        return self.deployment.parent / "deployment-logs" / "codedeploy-agent-deployments.log"

    def open_log(self) -> ScriptLog:
        return open_script_log(self.script_log_path, "d-TEST123", self.deployments_log_path)

    def script_log_entries(self) -> List[str]:
        entries = []
        for line in self.script_log_path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$", line)
            assert match, line
            entries.append(match.group(1))
        return entries


@pytest.fixture
def revision(tmp_path: Path) -> Revision:
    root = tmp_path / "deployment" / "deployment-archive"
    root.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    return Revision(root=root, out=out, deployment=tmp_path / "deployment")


def base_environment(revision: Revision, leftovers: Leftovers) -> Dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        LIFECYCLE_EVENT="ApplicationStart",
        DEPLOYMENT_ID="d-TEST123",
        OUT=str(revision.out),
        MARKER=leftovers.marker,
        PYTHON=sys.executable,
    )
    return environment


def run(
    revision: Revision,
    leftovers: Leftovers,
    scripts: List[HookScript],
    settings: HookRunSettings = HookRunSettings(),  # noqa: B008
    environment: Optional[Dict[str, str]] = None,
) -> str:
    with revision.open_log() as log:
        return run_event_scripts(
            "ApplicationStart",
            scripts,
            revision.root,
            environment if environment is not None else base_environment(revision, leftovers),
            log,
            settings,
        )


def run_failing(
    revision: Revision,
    leftovers: Leftovers,
    scripts: List[HookScript],
    settings: HookRunSettings = HookRunSettings(),  # noqa: B008
) -> LifecycleEventError:
    with pytest.raises(LifecycleEventError) as caught:
        run(revision, leftovers, scripts, settings)
    return caught.value


def wait_for_file(path: Path, seconds: float = 10.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text(encoding="utf-8").strip():
            return path.read_text(encoding="utf-8").strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def is_gone(pid: int, seconds: float = 5.0) -> bool:
    """The process ended (a zombie waiting for init to reap it counts as ended)."""
    end = time.monotonic() + seconds
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cgroups_available() -> bool:
    probe = create_hook_cgroup()
    if probe is None:
        return False
    probe.remove()
    return True


def unified_cgroup_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


# -- output, logs, environment ------------------------------------------------------------


def test_output_is_logged_line_by_line_in_both_logs(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script(
        "scripts/start.sh",
        "#!/bin/bash\necho out1\nsleep 0.2\necho err1 >&2\nsleep 0.2\necho out2\n"
        "sleep 0.2\nprintf 'no newline at the end' >&2\n",
    )
    tail = run(revision, leftovers, [script])

    expected = [
        "LifecycleEvent - ApplicationStart",
        "Script - scripts/start.sh",
        "[stdout]out1",
        "[stderr]err1",
        "[stdout]out2",
        "[stderr]no newline at the end",
    ]
    assert revision.script_log_entries() == expected
    assert tail == "".join(entry + "\n" for entry in expected)

    deployments = revision.deployments_log_path.read_text(encoding="utf-8").splitlines()
    pattern = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[d-TEST123\](.*)$")
    entries = []
    for line in deployments:
        match = pattern.match(line)
        assert match, line
        entries.append(match.group(1))
    assert entries == expected


def test_scripts_run_in_order_and_the_log_is_appended(
    revision: Revision, leftovers: Leftovers
) -> None:
    first = revision.script("one.sh", "#!/bin/sh\necho first\n")
    second = revision.script("two.sh", "#!/bin/sh\necho second\n")
    run(revision, leftovers, [first, second])
    run(revision, leftovers, [second])
    assert revision.script_log_entries() == [
        "LifecycleEvent - ApplicationStart",
        "Script - one.sh",
        "[stdout]first",
        "Script - two.sh",
        "[stdout]second",
        "LifecycleEvent - ApplicationStart",
        "Script - two.sh",
        "[stdout]second",
    ]


def test_an_event_without_scripts_does_nothing(revision: Revision, leftovers: Leftovers) -> None:
    assert run(revision, leftovers, []) == ""
    assert not revision.script_log_path.exists()
    assert not revision.deployments_log_path.exists()


def test_the_environment_is_passed_as_given(revision: Revision, leftovers: Leftovers) -> None:
    script = revision.script(
        "env.sh",
        "#!/bin/sh\n\"$PYTHON\" -c 'import json, os; print(json.dumps(dict(os.environ)))'"
        ' > "$OUT/env.json"\n',
    )
    environment = base_environment(revision, leftovers)
    environment["SPACED_VALUE"] = "a value with spaces and ünïcode"
    environment.pop("HOME", None)
    run(revision, leftovers, [script], environment=environment)

    seen = json.loads((revision.out / "env.json").read_text(encoding="utf-8"))
    assert seen["SPACED_VALUE"] == "a value with spaces and ünïcode"
    assert seen["LIFECYCLE_EVENT"] == "ApplicationStart"
    assert seen["DEPLOYMENT_ID"] == "d-TEST123"
    assert "HOME" not in seen  # nothing is added when the script runs as the agent's user


def test_loader_variables_and_non_allowlisted_names_can_be_dropped(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script("env.sh", '#!/bin/sh\nenv > "$OUT/env.txt"\n')
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OUT": str(revision.out),
        "LD_PRELOAD": "",
        "LD_LIBRARY_PATH": "/nowhere",
        "SECRET_TOKEN": "s3cr3t",
        "DEPLOYMENT_ID": "d-TEST123",
        "BUNDLE_KEY": "app.tar",
    }
    settings = HookRunSettings(strip_loader_env=True, env_allowlist=frozenset({"PATH", "OUT"}))
    run(revision, leftovers, [script], settings, environment)
    names = {
        line.split("=", 1)[0]
        for line in (revision.out / "env.txt").read_text(encoding="utf-8").splitlines()
    }
    assert {"PATH", "OUT", "DEPLOYMENT_ID", "BUNDLE_KEY"} <= names
    assert not names & {"LD_PRELOAD", "LD_LIBRARY_PATH", "SECRET_TOKEN"}


def test_standard_input_is_closed(revision: Revision, leftovers: Leftovers) -> None:
    script = revision.script(
        "stdin.sh",
        '#!/bin/bash\nread -r line\necho "read-status=$? line=[$line]"\n'
        'readlink /proc/$$/fd/0 > "$OUT/stdin"\n',
    )
    started = time.monotonic()
    tail = run(revision, leftovers, [script])
    assert time.monotonic() - started < FAST_ENOUGH_SECONDS
    assert "[stdout]read-status=1 line=[]\n" in tail
    assert (revision.out / "stdin").read_text(encoding="utf-8").strip() == "/dev/null"


def test_a_script_that_is_not_executable_is_made_executable(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script("plain.sh", "#!/bin/sh\necho ran\n", mode=0o644)
    tail = run(revision, leftovers, [script])
    assert tail.endswith("[stdout]ran\n")
    mode = stat.S_IMODE((revision.root / "plain.sh").stat().st_mode)
    assert mode == 0o755


def test_a_script_without_a_shebang_runs_under_sh(revision: Revision, leftovers: Leftovers) -> None:
    script = revision.script(
        "noshebang.sh", 'echo "under sh"\nreadlink /proc/$$/exe > "$OUT/shell"\n'
    )
    tail = run(revision, leftovers, [script])
    assert tail.endswith("[stdout]under sh\n")
    assert (revision.out / "shell").read_text(encoding="utf-8").strip() == os.path.realpath(
        "/bin/sh"
    )


def test_a_leading_slash_is_relative_to_the_revision(
    revision: Revision, leftovers: Leftovers
) -> None:
    revision.script("scripts/abs.sh", "#!/bin/sh\necho fine\n")
    tail = run(revision, leftovers, [HookScript(location="/scripts/abs.sh")])
    assert tail.endswith("[stdout]fine\n")


# -- failures -----------------------------------------------------------------------------


def test_a_missing_script_is_code_1(revision: Revision, leftovers: Leftovers) -> None:
    error = run_failing(revision, leftovers, [HookScript(location="scripts/nowhere.sh")])
    assert error.error_code == ErrorCode.SCRIPT_MISSING
    assert error.script_name == "scripts/nowhere.sh"
    assert "Script does not exist at specified location: scripts/nowhere.sh" in error.message
    assert "\n" not in error.message
    assert error.log == "LifecycleEvent - ApplicationStart\n"


def test_a_location_outside_the_revision_is_refused(
    revision: Revision, leftovers: Leftovers
) -> None:
    outside = revision.root.parent / "outside.sh"
    outside.write_text(f"#!/bin/sh\ntouch {revision.out}/ran\n", encoding="utf-8")
    outside.chmod(0o755)
    error = run_failing(revision, leftovers, [HookScript(location="../outside.sh")])
    assert error.error_code == ErrorCode.SCRIPT_MISSING
    assert "outside the revision" in error.message
    assert not (revision.out / "ran").exists()


def test_a_failing_script_is_code_4_with_its_log_and_stops_the_event(
    revision: Revision, leftovers: Leftovers
) -> None:
    failing = revision.script(
        "fail.sh", "#!/bin/sh\necho about to fail\necho 'bad thing' >&2\nexit 3\n"
    )
    never = revision.script("never.sh", f"#!/bin/sh\ntouch {revision.out}/never\n")
    error = run_failing(revision, leftovers, [failing, never])
    assert error.error_code == ErrorCode.SCRIPT_FAILED
    assert error.script_name == "fail.sh"
    assert error.message == "Script at specified location: fail.sh failed with exit code 3"
    assert "[stdout]about to fail\n" in error.log
    assert "[stderr]bad thing\n" in error.log
    assert error.log.startswith("LifecycleEvent - ApplicationStart\nScript - fail.sh\n")
    assert not (revision.out / "never").exists()
    assert "Script - never.sh" not in revision.script_log_entries()
    diagnostics = error.diagnostics()
    assert diagnostics.error_code == ErrorCode.SCRIPT_FAILED
    assert diagnostics.log == error.log


def test_a_script_killed_by_a_signal_names_the_signal(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script("killed.sh", "#!/bin/sh\necho dying\nkill -KILL $$\n")
    error = run_failing(revision, leftovers, [script])
    assert error.error_code == ErrorCode.SCRIPT_FAILED
    assert "SIGKILL" in error.message


def test_the_log_tail_is_bounded_and_ends_with_the_last_output(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script(
        "chatty.sh",
        '#!/bin/bash\nfor i in $(seq 1 300); do echo "line $i of the chatty script"; done\n'
        "echo last-line\nexit 7\n",
    )
    error = run_failing(revision, leftovers, [script])
    assert len(error.log) == LOG_TAIL_CHARACTERS
    assert error.log.endswith("[stdout]line 300 of the chatty script\n[stdout]last-line\n")
    assert len(revision.script_log_entries()) == 2 + 301


def test_a_very_long_line_is_logged_in_pieces(revision: Revision, leftovers: Leftovers) -> None:
    script = revision.script(
        "long.sh", "#!/bin/sh\nhead -c 200000 /dev/zero | tr '\\0' x\necho\necho after\n"
    )
    run(revision, leftovers, [script])
    entries = revision.script_log_entries()
    pieces = [entry for entry in entries if entry.startswith("[stdout]x")]
    assert sum(len(piece) - len("[stdout]") for piece in pieces) == 200000
    assert all(len(piece) - len("[stdout]") <= 64 * 1024 for piece in pieces)
    assert entries[-1] == "[stdout]after"


# -- timeouts and containment -------------------------------------------------------------

# Starts a process that calls setsid() and is reparented to init: the classic daemon.
# ``linger`` is how long the two intermediate processes live before exiting.
DAEMONIZING_SCRIPT = """#!/bin/bash
cat /proc/self/cgroup > "$OUT/cgroup"
echo starting
"$PYTHON" -c '
import os, sys, time
linger = float(sys.argv[2])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep({long_sleep})
        os._exit(0)
    time.sleep(linger)
    os._exit(0)
time.sleep(linger)
' "$OUT/grandchild.pid" {linger} "$MARKER-grandchild"
echo daemon started
exec -a "$MARKER-script" sleep {long_sleep}
"""


def assert_timed_out_and_nothing_survived(
    revision: Revision,
    leftovers: Leftovers,
    settings: HookRunSettings,
    linger: float,
    timeout: float,
) -> str:
    revision.script(
        "scripts/daemonize.sh",
        DAEMONIZING_SCRIPT.format(long_sleep=LONG_SLEEP, linger=linger),
    )
    started = time.monotonic()
    error = run_failing(
        revision,
        leftovers,
        [HookScript(location="scripts/daemonize.sh", timeout=timeout)],
        settings,
    )
    elapsed = time.monotonic() - started

    assert error.error_code == ErrorCode.SCRIPT_TIMED_OUT
    assert error.message == (
        f"Script at specified location: scripts/daemonize.sh failed to complete in"
        f" {int(timeout)} seconds"
    )
    assert "[stdout]daemon started\n" in error.log
    assert elapsed < FAST_ENOUGH_SECONDS, elapsed
    grandchild = int(wait_for_file(revision.out / "grandchild.pid"))
    assert is_gone(grandchild), f"grandchild {grandchild} survived the timeout"
    survivors = [p for p in leftovers.processes() if is_running(p.pid)]
    assert survivors == [], [p.cmdline() for p in survivors]
    return (revision.out / "cgroup").read_text(encoding="utf-8")


def test_a_timeout_ends_the_whole_tree_in_a_cgroup(
    revision: Revision, leftovers: Leftovers
) -> None:
    if not cgroups_available():
        pytest.skip("this host does not let us create a cgroup v2")
    # The intermediate processes exit at once: only the cgroup still knows the daemon.
    cgroup = assert_timed_out_and_nothing_survived(
        revision, leftovers, HookRunSettings(kill_grace_seconds=2.0), linger=0.0, timeout=3
    )
    hook_cgroup = unified_cgroup_of(cgroup)
    assert "codedeploy-hook-" in hook_cgroup
    assert not Path("/sys/fs/cgroup/unified", hook_cgroup.lstrip("/")).exists()
    assert not Path("/sys/fs/cgroup", hook_cgroup.lstrip("/")).exists()


def test_a_timeout_ends_the_whole_tree_without_cgroups(
    revision: Revision, leftovers: Leftovers
) -> None:
    # The intermediates live a moment, then the daemon is reparented to init in its own
    # session; tracking must still know it.
    cgroup = assert_timed_out_and_nothing_survived(
        revision,
        leftovers,
        HookRunSettings(use_cgroups=False, kill_grace_seconds=2.0),
        linger=1.0,
        timeout=4,
    )
    assert "codedeploy-hook-" not in cgroup


@pytest.mark.parametrize("use_cgroups", [True, False])
def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(
    revision: Revision, leftovers: Leftovers, use_cgroups: bool
) -> None:
    script = revision.script(
        "stubborn.sh",
        "#!/bin/bash\ntrap 'echo got TERM' TERM\necho waiting\n"
        'while true; do "$PYTHON" -c "import time; time.sleep(0.2)" "$MARKER-loop"; done\n',
    )
    started = time.monotonic()
    error = run_failing(
        revision,
        leftovers,
        [HookScript(location=script.location, timeout=2)],
        HookRunSettings(kill_grace_seconds=1.0, use_cgroups=use_cgroups),
    )
    assert error.error_code == ErrorCode.SCRIPT_TIMED_OUT
    assert time.monotonic() - started < FAST_ENOUGH_SECONDS
    assert "[stdout]got TERM\n" in error.log
    time.sleep(0.5)
    assert [p for p in leftovers.processes() if is_running(p.pid)] == []


# -- what a successful script leaves behind -----------------------------------------------

LEFT_OPEN_SCRIPT = """#!/bin/bash
echo before
(exec -a "$MARKER-holder" sleep 30) &
echo $! > "$OUT/holder.pid"
echo after
"""


def test_outputs_left_open_fail_fast_and_name_the_holder(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script("start.sh", LEFT_OPEN_SCRIPT)
    started = time.monotonic()
    error = run_failing(revision, leftovers, [script])
    elapsed = time.monotonic() - started
    holder = int(wait_for_file(revision.out / "holder.pid"))

    assert error.error_code == ErrorCode.OUTPUTS_LEFT_OPEN
    assert elapsed < FAST_ENOUGH_SECONDS
    assert f"pid {holder} (" in error.message
    assert leftovers.marker in error.message
    assert "> /dev/null 2>&1" in error.message
    assert "\n" not in error.message
    notes = [e for e in revision.script_log_entries() if e.startswith("[agent]")]
    assert len(notes) == 1 and f"pid {holder} (" in notes[0]
    assert error.log.endswith(notes[0] + "\n")
    # The holder is usually the application: it is reported, not killed.
    assert is_running(holder)


def test_outputs_left_open_can_count_as_success(revision: Revision, leftovers: Leftovers) -> None:
    script = revision.script(
        "start.sh",
        "#!/bin/bash\n"
        '(for i in $(seq 1 30); do echo tick; sleep 0.1; done; echo ok > "$OUT/survived";'
        ' exec -a "$MARKER-holder" sleep 30) &\n'
        'echo $! > "$OUT/holder.pid"\necho started\n',
    )
    started = time.monotonic()
    tail = run(
        revision,
        leftovers,
        [script],
        HookRunSettings(
            outputs_left_open=OutputsLeftOpenPolicy.SUCCEED, outputs_left_open_wait_seconds=0.5
        ),
    )
    assert time.monotonic() - started < FAST_ENOUGH_SECONDS
    holder = int(wait_for_file(revision.out / "holder.pid"))
    assert f"pid {holder} (" in tail
    # The holder goes on writing to the pipe we stopped reading, and does not die of it.
    assert wait_for_file(revision.out / "survived", seconds=15) == "ok"
    assert is_running(holder)


def test_a_daemon_started_by_a_successful_script_keeps_running(
    revision: Revision, leftovers: Leftovers
) -> None:
    script = revision.script(
        "start.sh",
        "#!/bin/bash\n"
        'cat /proc/self/cgroup > "$OUT/cgroup"\n'
        f'(exec -a "$MARKER-daemon" sleep {LONG_SLEEP}) > /dev/null 2>&1 &\n'
        'echo $! > "$OUT/daemon.pid"\necho started\n',
    )
    started = time.monotonic()
    run(revision, leftovers, [script])
    assert time.monotonic() - started < FAST_ENOUGH_SECONDS
    daemon = int(wait_for_file(revision.out / "daemon.pid"))
    time.sleep(0.3)
    assert is_running(daemon)
    hook_cgroup = unified_cgroup_of((revision.out / "cgroup").read_text(encoding="utf-8"))
    daemon_cgroup = unified_cgroup_of(Path(f"/proc/{daemon}/cgroup").read_text(encoding="utf-8"))
    if "codedeploy-hook-" in hook_cgroup:
        assert daemon_cgroup != hook_cgroup
        assert not Path("/sys/fs/cgroup/unified", hook_cgroup.lstrip("/")).exists()
        assert not Path("/sys/fs/cgroup", hook_cgroup.lstrip("/")).exists()


def test_a_script_is_born_in_its_cgroup_with_no_python_code_in_the_child(
    revision: Revision, leftovers: Leftovers
) -> None:
    # Python code in the child (a preexec_fn, and the at-fork callbacks that come with it)
    # means a full fork of the agent's memory maps for every script; a plain vfork + exec
    # runs none, and the agent steps into the cgroup around the start instead.
    if not cgroups_available():
        pytest.skip("this host does not let us create a cgroup v2")
    forked_python = revision.out / "python-ran-in-a-child"
    armed = [True]

    def note_python_in_child() -> None:
        if armed[0]:
            forked_python.write_text("yes", encoding="utf-8")

    os.register_at_fork(after_in_child=note_python_in_child)
    script = revision.script("where.sh", '#!/bin/sh\ncat /proc/self/cgroup > "$OUT/cgroup"\n')
    try:
        run(revision, leftovers, [script])
    finally:
        armed[0] = False
    assert not forked_python.exists()
    assert "codedeploy-hook-" in unified_cgroup_of(
        (revision.out / "cgroup").read_text(encoding="utf-8")
    )
    own = unified_cgroup_of(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
    assert "codedeploy-hook-" not in own


# -- runas --------------------------------------------------------------------------------


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="cdtest-runas-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.root
def test_runas_switches_user_groups_and_home(
    shared_folder: Path, leftovers: Leftovers, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("runas needs the agent to run as root")
    user = pwd.getpwnam("nobody")
    root = shared_folder / "deployment-archive"
    root.mkdir()
    out = shared_folder / "out"
    out.mkdir()
    out.chmod(0o777)
    revision = Revision(root=root, out=out, deployment=tmp_path / "deployment")
    revision.script(
        "whoami.sh",
        "#!/bin/sh\n"
        'id -u > "$OUT/uid"\nid -g > "$OUT/gid"\nid -G > "$OUT/groups"\n'
        'echo "$HOME $USER $LOGNAME $SHELL" > "$OUT/env"\n'
        'cat /proc/self/cgroup > "$OUT/cgroup"\necho "running as $(id -un)"\n',
    )
    tail = run(revision, leftovers, [HookScript(location="whoami.sh", runas="nobody")])
    assert (out / "uid").read_text(encoding="utf-8").split() == [str(user.pw_uid)]
    assert (out / "gid").read_text(encoding="utf-8").split() == [str(user.pw_gid)]
    assert {int(g) for g in (out / "groups").read_text(encoding="utf-8").split()} == set(
        os.getgrouplist("nobody", user.pw_gid)
    )
    assert (out / "env").read_text(encoding="utf-8").split() == [
        user.pw_dir,
        "nobody",
        "nobody",
        user.pw_shell,
    ]
    assert tail.endswith("[stdout]running as nobody\n")
    if cgroups_available():
        assert "codedeploy-hook-" in unified_cgroup_of((out / "cgroup").read_text(encoding="utf-8"))


@pytest.mark.root
def test_a_runas_script_that_fails_names_the_user(
    shared_folder: Path, leftovers: Leftovers, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("runas needs the agent to run as root")
    root = shared_folder / "deployment-archive"
    root.mkdir()
    revision = Revision(root=root, out=shared_folder, deployment=tmp_path / "deployment")
    revision.script("fail.sh", "#!/bin/sh\nexit 5\n")
    error = run_failing(revision, leftovers, [HookScript(location="fail.sh", runas="daemon")])
    assert error.error_code == ErrorCode.SCRIPT_FAILED
    assert error.message == (
        "Script at specified location: fail.sh run as user daemon failed with exit code 5"
    )


def test_runas_an_unknown_user_is_a_clear_error(revision: Revision, leftovers: Leftovers) -> None:
    revision.script("x.sh", f"#!/bin/sh\ntouch {revision.out}/ran\n")
    error = run_failing(
        revision, leftovers, [HookScript(location="x.sh", runas="no-such-user-cdtest")]
    )
    assert error.error_code == ErrorCode.SCRIPT_FAILED
    assert "no-such-user-cdtest" in error.message
    assert "\n" not in error.message
    assert not (revision.out / "ran").exists()
