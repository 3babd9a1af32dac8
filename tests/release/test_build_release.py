"""scripts/build-release: one bundle that installs with no network, or one line and nothing.

The bundle is built once for the module (about ten seconds). The offline-install test
installs it into a fresh virtual environment with pip inside a network namespace that has
no interface but lo, then runs both programs and deploys the sample revision with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest

from release.build_release import Wheel, bundle_platform
from tests.support.checkout import REPO

BUILD = REPO / "scripts" / "build-release"
VERSION = __import__("agent").__version__
PYTHON_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
SAMPLE_PIDFILE = Path("/tmp/codedeploy-sample/run/server.pid")


def _build(
    dist: Path, *options: str, env: Dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), "--dist", str(dist), *options],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=240,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    result = _build(dist)
    assert result.returncode == 0, result.stderr
    (built,) = dist.iterdir()
    assert result.stdout.strip() == str(built)
    return built


@pytest.fixture(scope="module")
def unpacked(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    (top,) = where.iterdir()
    return top


def _members(bundle: Path) -> List[str]:
    with tarfile.open(bundle) as tar:
        return sorted(tar.getnames())


def test_bundle_name_layout_and_manifest(bundle: Path, unpacked: Path) -> None:
    manifest = json.loads((unpacked / "MANIFEST.json").read_text(encoding="utf-8"))
    top = f"codedeploy-agent-py-{VERSION}-{PYTHON_TAG}-{manifest['platform']}"
    assert bundle.name == f"{top}.tar.gz"
    assert unpacked.name == top
    # PyYAML ships manylinux2014 wheels (glibc 2.17): the bundle says those hosts.
    assert manifest["platform"] == "manylinux_2_17_x86_64"
    assert (manifest["version"], manifest["python_tag"]) == (VERSION, PYTHON_TAG)

    dependencies = {d["name"].lower().replace("_", "-") for d in manifest["dependencies"]}
    runtime = {"botocore", "pyyaml", "psutil", "structlog", "apscheduler", "libarchive-c"}
    assert runtime <= dependencies
    # The server's extra only with --with-server; the test extra never.
    assert not dependencies & {"pytest", "moto", "mypy", "ruff", "cryptography", "uvicorn"}
    assert manifest["extras"] == []
    wheel = f"wheel/codedeploy_agent_py-{VERSION}-py3-none-any.whl"
    assert manifest["wheel"] == wheel
    installer = {f"host_install/{p.name}" for p in (REPO / "release/host_install").glob("*.py")}
    (pip_wheel,) = [p.relative_to(unpacked).as_posix() for p in (unpacked / "tools").glob("*")]
    assert pip_wheel.startswith("tools/pip-") and pip_wheel.endswith("-py3-none-any.whl")
    expected = {
        "install",
        *installer,
        pip_wheel,
        "conf/codedeployagent.yml",
        "conf/codedeploy-server.yml",
        "systemd/codedeploy-agent.service",
        "systemd/codedeploy-server.service",
        wheel,
        *(d["file"] for d in manifest["dependencies"]),
    }
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert files == expected | {"MANIFEST.json"}
    assert set(manifest["files"]) == expected
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((unpacked / name).read_bytes()).hexdigest() == digest, name
    directories = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_dir()}
    assert directories == {"conf", "host_install", "systemd", "tools", "wheel", "wheelhouse"}
    assert os.access(unpacked / "install", os.X_OK)
    assert (unpacked / "install").read_bytes() == (REPO / "scripts/install").read_bytes()
    for unit in ("codedeploy-agent.service", "codedeploy-server.service"):
        assert (unpacked / "systemd" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()


def test_shipped_configuration_is_the_defaults(unpacked: Path) -> None:
    from agent.configuration.loader import read_agent_config
    from agent.configuration.model import AgentConfig

    config = read_agent_config(unpacked / "conf/codedeployagent.yml")
    assert config.warnings == ()
    assert config == AgentConfig(config_file=unpacked / "conf/codedeployagent.yml")


def test_two_builds_have_the_same_file_list(bundle: Path, tmp_path: Path) -> None:
    again = _build(tmp_path)
    assert again.returncode == 0, again.stderr
    (second,) = tmp_path.iterdir()
    assert second.name == bundle.name
    assert _members(second) == _members(bundle)
    # Timestamps come from the last commit and owners are root: the bytes match too.
    assert second.read_bytes() == bundle.read_bytes()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, encoding="utf-8", env=env, timeout=240
    )


@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a network namespace",
)
def test_installs_and_deploys_with_no_network(unpacked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    manifest = json.loads((unpacked / "MANIFEST.json").read_text(encoding="utf-8"))
    install = _run(
        [
            "unshare",
            "--net",
            "--",
            str(venv / "bin/pip"),
            "--isolated",
            "--disable-pip-version-check",
            "install",
            "--no-index",
            "--find-links",
            str(unpacked / "wheelhouse"),
            str(unpacked / manifest["wheel"]),
        ],
        env,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    for program in ("codedeploy-local", "codedeploy-agent"):
        shown = _run([str(venv / "bin" / program), "--version"], env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == f"{program} {VERSION}"

    config = tmp_path / "codedeployagent.yml"
    config.write_text(
        f"---\n:root_dir: '{tmp_path / 'root'}'\n:log_dir: '{tmp_path / 'log'}'\n",
        encoding="utf-8",
    )
    env["SAMPLE_APP_PORT"] = str(_free_port())
    try:
        deployed = _run(
            [
                str(venv / "bin/codedeploy-local"),
                "--bundle-location",
                str(REPO / "hooks"),
                "--type",
                "directory",
                "--file-exists-behavior",
                "OVERWRITE",
                "--agent-configuration-file",
                str(config),
            ],
            env,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        scripts_logs = list((tmp_path / "root").glob("*/*/logs/scripts.log"))
        assert len(scripts_logs) == 1
        assert "started server" in scripts_logs[0].read_text(encoding="utf-8")
    finally:
        if SAMPLE_PIDFILE.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(SAMPLE_PIDFILE.read_text()), signal.SIGTERM)
            SAMPLE_PIDFILE.unlink()


def test_a_missing_dependency_is_one_line_and_no_bundle(tmp_path: Path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    dist = tmp_path / "dist"
    result = _build(dist, "--find-links", str(empty))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("build-release: cannot get the runtime dependencies as wheels: ")
    assert "Could not find a version" in lines[0]
    assert result.stdout == ""
    assert list(dist.iterdir()) == []


def test_the_environment_variable_also_sets_where_pip_looks(tmp_path: Path) -> None:
    empty = tmp_path / "empty-index"
    empty.mkdir()
    dist = tmp_path / "dist"
    result = _build(dist, env=dict(os.environ, BUILD_RELEASE_FIND_LINKS=str(empty)))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert list(dist.iterdir()) == []


def test_a_find_links_that_is_not_a_folder_is_one_line(tmp_path: Path) -> None:
    result = _build(tmp_path / "dist", "--find-links", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"build-release: --find-links {tmp_path / 'nowhere'} is not a folder"
    ]


def _wheel(name: str, platforms: str) -> Wheel:
    return Wheel(Path(f"{name}.whl"), name, "1", tuple(platforms.split(".")), False)


def test_the_platform_is_the_newest_glibc_any_wheel_needs() -> None:
    pure = _wheel("pure", "any")
    psutil = _wheel("psutil", "manylinux2010_x86_64.manylinux_2_12_x86_64")
    pyyaml = _wheel("pyyaml", "manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64")
    assert bundle_platform([pure], "linux_x86_64") == "any"
    assert bundle_platform([pure, psutil], "linux_x86_64") == "manylinux_2_12_x86_64"
    assert bundle_platform([psutil, pyyaml], "linux_x86_64") == "manylinux_2_17_x86_64"
    # A wheel built here from an sdist installs only on hosts like this one.
    built = _wheel("fromsdist", "linux_x86_64")
    assert bundle_platform([pyyaml, built], "linux_x86_64") == "linux_x86_64"


SETUPTOOLS_WHEELS = sorted(Path("/opt/pypi/files").glob("setuptools-*-py3-none-any.whl"))


@pytest.mark.skipif(not SETUPTOOLS_WHEELS, reason="no setuptools wheel in the local stores")
def test_a_dependency_with_only_an_sdist_is_built_and_recorded(
    unpacked: Path, tmp_path: Path
) -> None:
    # The stores hold every dependency as a wheel except six, which has only an sdist.
    store = tmp_path / "store"
    shutil.copytree(unpacked / "wheelhouse", store)
    (six_wheel,) = store.glob("six-*.whl")
    version = six_wheel.name.split("-")[1]
    six_wheel.unlink()
    shutil.copy(SETUPTOOLS_WHEELS[-1], store)
    source = tmp_path / f"six-{version}"
    source.mkdir()
    (source / "six.py").write_text("PY3 = True\n", encoding="utf-8")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "six"\nversion = "{version}"\n'
        '[tool.setuptools]\npy-modules = ["six"]\n',
        encoding="utf-8",
    )
    with tarfile.open(store / f"six-{version}.tar.gz", "w:gz") as sdist:
        sdist.add(source, arcname=source.name)

    result = _build(tmp_path / "dist", "--find-links", str(store))
    assert result.returncode == 0, result.stderr
    (built,) = (tmp_path / "dist").iterdir()
    with tarfile.open(built) as tar:
        member = tar.extractfile(f"{built.name[: -len('.tar.gz')]}/MANIFEST.json")
        assert member is not None
        manifest = json.load(member)
    from_source = {d["name"] for d in manifest["dependencies"] if d["built_from_source"]}
    assert from_source == {"six"}
    # six builds into a pure wheel: the bundle still installs on the same hosts.
    assert manifest["platform"] == "manylinux_2_17_x86_64"
