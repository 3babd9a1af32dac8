"""codedeploy-local end to end: real bundles, a real subprocess, a temporary deployment root.

Each test builds a revision whose hooks record (event, deployment id, environment) into a
file, deploys it with ``python -m agent.local_deployment`` and checks what a user of the
AWS agent would look at: the installed tree, modes and owners, the hook order and
environment, and the files under the deployment root.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import signal
import stat
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.support.archives import make_bundle, write_tree
from tests.support.local_agent import LocalAgent, LocalRun

RECORD_SCRIPT = """#!/bin/sh
echo "{tag} $LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME $DEPLOYMENT_GROUP_ID $(id -u)" >> {record}
"""

EVENTS = ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")


def revision(
    where: Path,
    tag: str,
    install: Path,
    record: Path,
    *,
    extra_files: Optional[Dict[str, str]] = None,
    extra_hooks: str = "",
    permissions: bool = True,
) -> Path:
    hooks = "".join(
        f"  {event}:\n    - location: hooks/record.sh\n      timeout: 30\n" for event in EVENTS
    )
    permission_block = (
        f"""permissions:
  - object: {install}/app
    pattern: "*.sh"
    mode: 0750
    owner: nobody
    type:
      - file
"""
        if permissions
        else ""
    )
    files = {
        "appspec.yml": f"""version: 0.0
os: linux
files:
  - source: app
    destination: {install}/app
  - source: config/settings.ini
    destination: {install}/etc
{permission_block}hooks:
{hooks}{extra_hooks}""",
        "hooks/record.sh": RECORD_SCRIPT.format(tag=tag, record=record),
        "app/index.html": f"<h1>{tag}</h1>\n",
        "app/bin/run.sh": "#!/bin/sh\necho run\n",
        f"app/data/{tag}-only.txt": tag,
        "config/settings.ini": f"[app]\nrelease={tag}\n",
    }
    files.update(extra_files or {})
    write_tree(where, files)
    (where / "app" / "link").symlink_to("index.html")
    return where


def records(record: Path) -> List[List[str]]:
    if not record.exists():
        return []
    return [line.split() for line in record.read_text(encoding="utf-8").splitlines()]


def bundle_of(source: Path, kind: str, tmp_path: Path) -> Path:
    if kind == "directory":
        return source
    return make_bundle(source, tmp_path / f"{source.name}.{kind}", kind)


def deploy(agent: LocalAgent, bundle: Path, kind: str, *extra: str) -> LocalRun:
    return agent.run("--bundle-location", str(bundle), "--type", kind, *extra)


@pytest.mark.parametrize("kind", ["directory", "tgz", "tar", "zip"])
def test_first_deployment_installs_runs_hooks_and_lays_out_the_root(
    local_agent: LocalAgent, tmp_path: Path, kind: str
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(tmp_path / "v1", "v1", install, record)
    result = deploy(local_agent, bundle_of(source, kind, tmp_path), kind)
    assert result.returncode == 0, result.stderr
    deployment = result.deployment_dir
    group = "default-local-deployment-group"
    assert deployment.parent == local_agent.root / group
    assert f"Deployment {deployment.name} succeeded" in result.stdout

    # The installed tree: contents, a symlink kept as a symlink, modes and owners applied.
    assert (install / "app/index.html").read_text() == "<h1>v1</h1>\n"
    assert (install / "etc/settings.ini").read_text() == "[app]\nrelease=v1\n"
    assert os.readlink(install / "app/link") == "index.html"
    run_sh = (install / "app/bin/run.sh").stat()
    # pattern "*.sh" matches direct children only: bin/run.sh keeps the archive's 0755.
    assert stat.S_IMODE(run_sh.st_mode) == 0o755
    assert (install / "app/data/v1-only.txt").exists()

    # Hooks: a first deployment has no previous revision, so no ApplicationStop.
    seen = records(record)
    assert [r[1] for r in seen] == [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    for row in seen:
        assert row[0] == "v1"
        assert row[2] == deployment.name
        assert row[4:6] == ["LocalFleet", group]

    # The deployment root, as the AWS agent lays it out.
    instructions = local_agent.root / "deployment-instructions"
    assert (instructions / f"{group}_last_successful_install").read_text() == str(deployment)
    assert (instructions / f"{group}_most_recent_install").read_text() == str(deployment)
    cleanup = (instructions / f"{group}-cleanup").read_text().splitlines()
    assert str(install / "app/index.html") in cleanup
    assert str(install / "etc/settings.ini") in cleanup
    plan = json.loads((instructions / f"{group}-install.json").read_text())
    kinds = {i["type"] for i in plan["instructions"]}
    assert {"copy", "mkdir"} <= kinds
    copies = {i["destination"] for i in plan["instructions"] if i["type"] == "copy"}
    assert str(install / "app/index.html") in copies
    assert (deployment / "deployment-archive/appspec.yml").exists()
    if kind != "directory":
        assert (deployment / "bundle.tar").exists()
    script_log = (deployment / "logs/scripts.log").read_text()
    assert "LifecycleEvent - BeforeInstall" in script_log
    assert "Script - hooks/record.sh" in script_log
    deployments_log = (
        local_agent.root / "deployment-logs/codedeploy-agent-deployments.log"
    ).read_text()
    assert f"[{deployment.name}]" in deployments_log


@pytest.mark.parametrize("kind", ["tgz", "tar", "zip", "directory"])
def test_second_deployment_replays_cleanup_and_stops_with_the_previous_scripts(
    local_agent: LocalAgent, tmp_path: Path, kind: str
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    first = deploy(
        local_agent,
        bundle_of(revision(tmp_path / "v1", "v1", install, record), kind, tmp_path),
        kind,
    )
    assert first.returncode == 0, first.stderr
    second = deploy(
        local_agent,
        bundle_of(revision(tmp_path / "v2", "v2", install, record), kind, tmp_path),
        kind,
    )
    assert second.returncode == 0, second.stderr
    assert first.deployment_dir != second.deployment_dir

    seen = records(record)[4:]
    # ApplicationStop ran the PREVIOUS revision's script with the NEW deployment id.
    assert seen[0][:3] == ["v1", "ApplicationStop", second.deployment_dir.name]
    assert [(r[0], r[1]) for r in seen[1:]] == [("v2", e) for e in EVENTS[1:]]

    # The first revision's files are gone, the second's are there.
    assert not (install / "app/data/v1-only.txt").exists()
    assert (install / "app/data/v2-only.txt").exists()
    assert (install / "app/index.html").read_text() == "<h1>v2</h1>\n"
    marker = (
        local_agent.root
        / "deployment-instructions/default-local-deployment-group_last_successful_install"
    )
    assert marker.read_text() == str(second.deployment_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_mode_from_permissions(local_agent: LocalAgent, tmp_path: Path) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(
        tmp_path / "v1", "v1", install, record, extra_files={"app/start.sh": "#!/bin/sh\n"}
    )
    result = deploy(local_agent, source, "directory")
    assert result.returncode == 0, result.stderr
    started = (install / "app/start.sh").stat()
    assert stat.S_IMODE(started.st_mode) == 0o750
    assert started.st_uid == pwd.getpwnam("nobody").pw_uid
    # The object itself is never touched.
    assert (install / "app").stat().st_uid == os.geteuid()


def test_failing_hook_names_the_script_and_its_log(local_agent: LocalAgent, tmp_path: Path) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(tmp_path / "v1", "v1", install, record)
    (source / "hooks/validate.sh").write_text("#!/bin/sh\necho checking\necho broken >&2\nexit 3\n")
    (source / "hooks/validate.sh").chmod(0o755)
    appspec = (source / "appspec.yml").read_text()
    appspec = appspec.replace(
        "  ValidateService:\n    - location: hooks/record.sh",
        "  ValidateService:\n    - location: hooks/validate.sh",
    )
    (source / "appspec.yml").write_text(appspec)
    result = deploy(local_agent, source, "directory")
    assert result.returncode == 1
    assert "failed in ValidateService" in result.stderr
    assert "hooks/validate.sh" in result.stderr
    assert "exit code 3" in result.stderr
    log_path = result.deployment_dir / "logs/scripts.log"
    assert f"Script log: {log_path}" in result.stderr
    assert "[stderr]broken" in log_path.read_text()
    assert "Traceback" not in result.stderr


def test_invalid_appspec_is_refused_before_anything_runs(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    assert (
        deploy(
            local_agent, revision(tmp_path / "v1", "v1", install, record), "directory"
        ).returncode
        == 0
    )
    before = records(record)
    broken = revision(tmp_path / "v2", "v2", install, record)
    text = (broken / "appspec.yml").read_text().replace("timeout: 30", "timeout: -5", 1)
    (broken / "appspec.yml").write_text(text)
    result = deploy(local_agent, broken, "directory")
    assert result.returncode == 2
    assert "timeout" in result.stderr and "-5" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # Not even the previous revision's ApplicationStop ran.
    assert records(record) == before
    assert (install / "app/data/v1-only.txt").exists()


def test_custom_events_run_when_named_and_must_exist(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(
        tmp_path / "v1",
        "v1",
        install,
        record,
        extra_hooks="  SmokeTest:\n    - location: hooks/record.sh\n",
    )
    result = deploy(local_agent, source, "directory", "--events", "BeforeInstall,SmokeTest")
    assert result.returncode == 0, result.stderr
    assert [r[1] for r in records(record)] == ["BeforeInstall", "SmokeTest"]

    missing = deploy(local_agent, source, "directory", "--events", "Nope")
    assert missing.returncode == 2
    assert "Nope" in missing.stderr


@pytest.mark.parametrize(
    ("events", "ran"),
    [
        ("DownloadBundle,ApplicationStart", ["ApplicationStart"]),
        ("DownloadBundle,BeforeInstall,ValidateService", ["BeforeInstall", "ValidateService"]),
        (
            "BeforeInstall,Install,ApplicationStart,ApplicationStart",
            ["BeforeInstall"] + ["ApplicationStart"] * 2,
        ),
    ],
)
def test_a_missing_step_runs_beside_the_named_one(
    local_agent: LocalAgent, tmp_path: Path, events: str, ran: List[str]
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    hooks = "".join(
        f"  {event}:\n    - location: hooks/seen.sh\n"
        for event in ("BeforeInstall", "ApplicationStart", "ValidateService")
    )
    source = write_tree(
        tmp_path / "v1",
        {
            "appspec.yml": f"version: 0.0\nos: linux\nfiles:\n  - source: app\n"
            f"    destination: {install}\nhooks:\n{hooks}",
            # Records each event and whether Install had already put the file in place.
            "hooks/seen.sh": f"#!/bin/sh\necho $LIFECYCLE_EVENT $(test -e {install}/index.html"
            f" && echo installed || echo absent) >> {record}\n",
            "app/index.html": "v1\n",
        },
    )
    result = deploy(local_agent, source, "directory", "--events", events)
    assert result.returncode == 0, result.stderr
    seen = records(record)
    assert [r[0] for r in seen] == ran
    expected_state = {"BeforeInstall": "absent"}
    assert [r[1] for r in seen] == [expected_state.get(e, "installed") for e in ran]


def test_appspec_event_not_named_is_an_error(local_agent: LocalAgent, tmp_path: Path) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(
        tmp_path / "v1",
        "v1",
        install,
        record,
        extra_hooks="  SmokeTest:\n    - location: hooks/record.sh\n",
    )
    result = deploy(local_agent, source, "directory")
    assert result.returncode == 2
    assert "SmokeTest" in result.stderr
    assert records(record) == []


def test_zip_slip_is_refused_and_nothing_lands_outside(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(tmp_path / "v1", "v1", install, record, permissions=False)
    bundle = make_bundle(source, tmp_path / "evil.zip", "zip")
    with zipfile.ZipFile(bundle, "a") as archive:
        archive.writestr("../../evil.txt", "owned")
    result = deploy(local_agent, bundle, "zip")
    # Refused by the pre-flight, before any command, as DownloadBundle would refuse it.
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'../../evil.txt'" in result.stderr
    assert not list(tmp_path.rglob("evil.txt"))
    # No deployment folder is left (only the group's lock file, taken before the unpack).
    assert not (local_agent.root / "default-local-deployment-group").exists()
    assert not install.exists()


def test_disallow_refuses_a_foreign_file_and_copies_nothing(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    (install / "app").mkdir(parents=True)
    (install / "app/index.html").write_text("someone else's")
    result = deploy(local_agent, revision(tmp_path / "v1", "v1", install, record), "directory")
    assert result.returncode == 1
    assert str(install / "app/index.html") in result.stderr
    assert (install / "app/index.html").read_text() == "someone else's"
    assert not (install / "etc").exists()

    overwrite = deploy(
        local_agent, tmp_path / "v1", "directory", "--file-exists-behavior", "OVERWRITE"
    )
    assert overwrite.returncode == 0, overwrite.stderr
    assert (install / "app/index.html").read_text() == "<h1>v1</h1>\n"


def test_bad_flags_exit_2_with_one_line(local_agent: LocalAgent, tmp_path: Path) -> None:
    result = local_agent.run("--bundle-location", str(tmp_path / "nowhere"), "--type", "tgz")
    assert result.returncode == 2
    assert result.stderr.startswith("codedeploy-local: --bundle-location")
    assert len(result.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = local_agent.run("--bundle-location", str(empty))
    assert result.returncode == 2
    assert "appspec.yml" in result.stderr


def _single_hook_revision(where: Path, script: str, timeout: int = 30) -> Path:
    return write_tree(
        where,
        {
            "appspec.yml": f"version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: hooks/start.sh\n      timeout: {timeout}\n",
            "hooks/start.sh": script,
        },
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_line = Path(f"/proc/{pid}/stat").read_text()
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def test_timeout_ends_the_whole_tree_including_a_setsid_grandchild(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"""#!/bin/sh
setsid sh -c 'echo $$ > {pidfile}; exec sleep 600' &
echo started
sleep 600
"""
    source = _single_hook_revision(tmp_path / "rev", script, timeout=2)
    started = time.monotonic()
    result = deploy(local_agent, source, "directory")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "failed to complete in 2 seconds" in result.stderr
    assert "hooks/start.sh" in result.stderr
    # The grandchild sleeps 600 s; finishing this early proves nobody waited for it.
    assert elapsed < 60
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_missing_script_and_output_left_open(local_agent: LocalAgent, tmp_path: Path) -> None:
    missing = write_tree(
        tmp_path / "missing",
        {
            "appspec.yml": "version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: hooks/absent.sh\n"
        },
    )
    result = deploy(local_agent, missing, "directory")
    assert result.returncode == 2
    assert "Script does not exist at specified location: hooks/absent.sh" in result.stderr

    pidfile = tmp_path / "holder.pid"
    holder = _single_hook_revision(
        tmp_path / "holder", f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\necho done\n"
    )
    started = time.monotonic()
    result = deploy(local_agent, holder, "directory")
    try:
        assert result.returncode == 1
        assert time.monotonic() - started < 60
        assert "sleep 300" in result.stderr
    finally:
        os.kill(int(pidfile.read_text()), 9)


def test_tar_writing_through_a_symlink_to_outside_is_refused(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    source = write_tree(tmp_path / "rev", {"appspec.yml": "version: 0.0\nos: linux\n"})
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as archive:
        archive.add(source / "appspec.yml", arcname="appspec.yml")
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        archive.addfile(link)
        payload = tarfile.TarInfo("escape/planted.txt")
        payload.size = 5
        archive.addfile(payload, io.BytesIO(b"owned"))
    result = deploy(local_agent, bundle, "tar")
    # DownloadBundle of a local archive runs before the first command: refused there.
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    failure = result.stderr.splitlines()
    assert len(failure) == 1 and failure[0].startswith("codedeploy-local: "), result.stderr
    assert f"bundle {bundle}: member 'escape/planted.txt'" in failure[0]
    assert not (outside / "planted.txt").exists()
    assert not (local_agent.root / "default-local-deployment-group").exists()


def test_truncated_bundle_is_a_clear_failure(local_agent: LocalAgent, tmp_path: Path) -> None:
    install, record = tmp_path / "install", tmp_path / "record.log"
    source = revision(
        tmp_path / "v1", "v1", install, record, extra_files={"app/big.bin": "x" * 200000}
    )
    whole = make_bundle(source, tmp_path / "whole.tgz", "tgz").read_bytes()
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(whole[: len(whole) // 2])
    result = deploy(local_agent, truncated, "tgz")
    assert result.returncode in (1, 2)
    assert str(truncated) in result.stderr
    assert "Traceback" not in result.stderr
    assert not install.exists()
    assert records(record) == []


def test_interrupt_ends_the_hook_and_says_so(local_agent: LocalAgent, tmp_path: Path) -> None:
    pidfile = tmp_path / "hook.pid"
    source = _single_hook_revision(
        tmp_path / "rev", f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n"
    )
    process = local_agent.start("-l", str(source))
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted in ApplicationStart" in stderr
    assert "Traceback" not in stderr
    hook = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(hook) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(hook)


def test_an_unusable_deployment_root_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    agent = LocalAgent(tmp_path)
    agent.config.write_text(f":root_dir: '{blocker}/root'\n", encoding="utf-8")
    install, record = tmp_path / "install", tmp_path / "record.log"
    result = deploy(agent, revision(tmp_path / "v1", "v1", install, record), "directory")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"codedeploy-local: cannot create the deployment root {blocker}/root"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert records(record) == []


def test_deployments_log_rotates_at_64_mib_and_local_log_is_written(
    local_agent: LocalAgent, tmp_path: Path
) -> None:
    deployments_log = local_agent.root / "deployment-logs" / "codedeploy-agent-deployments.log"
    deployments_log.parent.mkdir(parents=True)
    # Just under the AWS agent's 64 MiB, without writing 64 MiB: a sparse file.
    with deployments_log.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024 - 20)
    source = _single_hook_revision(tmp_path / "rev", "#!/bin/sh\necho after the rotation\n")
    result = deploy(local_agent, source, "directory")
    assert result.returncode == 0, result.stderr
    deployment_id = result.deployment_dir.name

    rotated = deployments_log.with_name(deployments_log.name + ".0")
    assert rotated.stat().st_size == 64 * 1024 * 1024 - 20
    assert f"[{deployment_id}][stdout]after the rotation" in deployments_log.read_text()
    assert deployments_log.stat().st_size < 4096

    # What the run logged is in <log_dir>/codedeploy-local.log, where the AWS utility logs.
    local_log = (local_agent.base / "log" / "codedeploy-local.log").read_text()
    assert "running scripts" in local_log and f"deployment_id={deployment_id}" in local_log
    # The folder the scripts come from, as a path an operator can paste.
    assert f"revision={result.deployment_dir / 'deployment-archive'} " in local_log


def test_an_unwritable_log_dir_is_one_warning_and_the_deployment_goes_on(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    agent = LocalAgent(tmp_path)
    agent.config.write_text(
        f":root_dir: '{tmp_path / 'root'}'\n:log_dir: '{blocker}/log'\n", encoding="utf-8"
    )
    source = _single_hook_revision(tmp_path / "rev", "#!/bin/sh\necho fine\n")
    result = deploy(agent, source, "directory")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "cannot write the log file" in line]
    assert len(warnings) == 1 and f"{blocker}/log/codedeploy-local.log" in warnings[0]
