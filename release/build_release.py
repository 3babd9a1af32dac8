"""Builds the release bundle, one tar.gz that installs the agent with no network at all.

Run by ``scripts/build-release`` under the project's virtual environment: the bundle is
for that Python (its tag, e.g. cp311) and for the hosts every wheel in it installs on (the
platform, e.g. manylinux_2_17_x86_64). The bundle holds one top folder::

    codedeploy-agent-py-<version>-<python tag>-<platform>/
        install                    the installer (scripts/install: POSIX sh, then host_install)
        host_install/              the installer proper (standard library only)
        MANIFEST.json              versions, tags, the sha256 of every other file
        conf/codedeployagent.yml   the default configuration, commented
        conf/codedeploy-server.yml the server's default configuration (install --with-server)
        systemd/codedeploy-agent.service, codedeploy-server.service
        wheel/<the project's wheel>
        wheelhouse/<every runtime dependency as a wheel (--with-server: the server's too)>
        tools/pip-<version>.whl    the pip the installer runs (hosts may have none)

Every failure is one line on stderr and exit status 1, and the dist file appears whole or
not at all (it is written to a temporary name and renamed).
"""

from __future__ import annotations

import argparse
import dataclasses
import email.parser
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# The installer's reading of a bundle is the other half of this file's writing of one: the
# same name, the same digests. (Run as a script, this folder is first on sys.path.)
from host_install.bundle import BUNDLE_NAME, MANIFEST, sha256_on_disk

REPO = Path(__file__).resolve().parent.parent
PROGRAM = "build-release"
# Old manylinux names and the glibc version they stand for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")


class ReleaseError(Exception):
    """A build step failed; the message is the one line the user sees."""


@dataclasses.dataclass(frozen=True)
class Wheel:
    path: Path
    name: str
    version: str
    platforms: Tuple[str, ...]
    built_from_source: bool


def _parse_wheel_name(path: Path, built: bool) -> Wheel:
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ReleaseError(f"{path.name} is not a wheel file name")
    return Wheel(path, parts[0], parts[1], tuple(parts[-1].split(".")), built)


def _normalized_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _glibc_of(platform: str) -> Optional[Tuple[Tuple[int, int], str]]:
    """The glibc version and architecture a manylinux tag needs; None for other tags."""
    for legacy, glibc in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            return glibc, platform[len(legacy) + 1 :]
    match = _MANYLINUX.match(platform)
    if match:
        return (int(match.group(1)), int(match.group(2))), match.group(3)
    return None


def bundle_platform(wheels: Sequence[Wheel], host_platform: str) -> str:
    """The platform tag naming the hosts every wheel installs on.

    Pure wheels install anywhere. A wheel with manylinux tags installs where glibc is at
    least the oldest of them, so the bundle needs the newest of those minimums. A wheel
    with only a host tag (linux_x86_64, one built here from an sdist) binds the bundle to
    hosts like this one, and the bundle says so with that tag.
    """
    needed: Optional[Tuple[int, int]] = None
    arch = host_platform.split("_", 1)[1] if "_" in host_platform else host_platform
    for wheel in wheels:
        if wheel.platforms == ("any",):
            continue
        glibcs = [found for found in map(_glibc_of, wheel.platforms) if found is not None]
        if not glibcs:
            return host_platform
        oldest, arch = min(glibcs)
        needed = oldest if needed is None else max(needed, oldest)
    if needed is None:
        return "any"
    return f"manylinux_{needed[0]}_{needed[1]}_{arch}"


def _pip_on_disk(arguments: Sequence[str], what: str, env: Dict[str, str]) -> str:
    """Run pip (it reads and writes the disk, and the configured package stores)."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", env=env)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line[len("ERROR:") :].strip() for line in lines if line.startswith("ERROR:")]
        reason = (errors or lines[-1:] or [f"pip exit {result.returncode}"])[0]
        raise ReleaseError(f"cannot {what}: {reason}")
    return result.stdout


# The extra a bundle carries with --with-server, so that ``install --with-server`` works
# offline. Not by default: its wheels (cryptography's) need a newer glibc than the agent's.
SERVER_EXTRA = "server"


def _runtime_requirements(wheel: Path, extras: Sequence[str]) -> List[str]:
    """The project's runtime requirements, read from its wheel, with those of ``extras``
    (their marker dropped); never the test extra's."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.HeaderParser().parsestr(archive.read(metadata_name).decode())
    wanted = {f'extra == "{extra}"' for extra in extras}
    requirements: List[str] = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        if "extra ==" not in marker:
            requirements.append(line)
        elif marker.strip() in wanted:
            requirements.append(requirement.strip())
    return requirements


def _python_tag() -> str:
    return f"{sys.implementation.name[:2]}{sys.version_info.major}{sys.version_info.minor}"


def _host_platform() -> str:
    import sysconfig

    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def _version() -> str:
    text = (REPO / "agent" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ReleaseError("agent/__init__.py has no __version__")
    return match.group(1)


def _source_date_epoch() -> str:
    """The last commit's time, so wheels and the tar carry stable timestamps."""
    found = os.environ.get("SOURCE_DATE_EPOCH")
    if found:
        return found
    result = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "0"


def _build_project_wheel_on_disk(stage: Path, env: Dict[str, str]) -> Path:
    """The project's wheel in ``stage/wheel``, built from a clean copy of the source:
    setuptools reuses a build/ folder left in a checkout and would ship its stale files."""
    source = stage.parent / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "__pycache__", "*.egg-info", ".*_cache"
        ),
    )
    wheel_dir = stage / "wheel"
    _pip_on_disk(
        ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheel_dir), str(source)],
        "build the project's wheel",
        env,
    )
    (project_wheel,) = wheel_dir.glob("*.whl")
    return project_wheel


def _get_dependencies_on_disk(
    house: Path, requirements: Sequence[str], find_links: Sequence[Path], env: Dict[str, str]
) -> List[Wheel]:
    """Every runtime dependency as a wheel in ``house``, from the stores pip is configured
    with or, with ``find_links``, only from those folders."""
    isolated: List[str] = []
    where: List[str] = []
    if find_links:
        isolated = ["--isolated"]
        where = ["--no-index"]
        for folder in find_links:
            where += ["--find-links", str(folder)]
    output = _pip_on_disk(
        [*isolated, "wheel", "--no-cache-dir", *where, "--wheel-dir", str(house), *requirements],
        "get the runtime dependencies as wheels",
        env,
    )
    # A dependency with only an sdist is built here into a wheel for this host; it is kept
    # and named in the manifest, and it binds the bundle's platform to this host's.
    # (--no-cache-dir: a wheel pip built earlier and reused would not be reported.)
    built = {_normalized_name(m) for m in re.findall(r"Created wheel for (\S+):", output)}
    wheels = [
        _parse_wheel_name(path, _normalized_name(path.name.split("-")[0]) in built)
        for path in sorted(house.glob("*.whl"))
    ]
    # A wheel with only a host tag (linux_x86_64) was built on some host, never a store's.
    return [
        dataclasses.replace(w, built_from_source=True)
        if any(p.startswith("linux_") for p in w.platforms)
        else w
        for w in wheels
    ]


def _copy_installer_files_on_disk(stage: Path, env: Dict[str, str]) -> None:
    """The default configurations, the units, the installer and the pip it runs."""
    (stage / "conf").mkdir()
    for config in ("codedeployagent.yml", "codedeploy-server.yml"):
        shutil.copyfile(REPO / "release" / config, stage / "conf" / config)
    (stage / "systemd").mkdir()
    for unit in ("codedeploy-agent.service", "codedeploy-server.service"):
        shutil.copyfile(REPO / "systemd" / unit, stage / "systemd" / unit)
    shutil.copyfile(REPO / "scripts" / "install", stage / "install")
    (stage / "install").chmod(0o755)
    shutil.copytree(
        REPO / "release" / "host_install",
        stage / "host_install",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    # pip is the installer's tool, not a dependency of the agent: it comes from the stores
    # pip is configured with, even when --find-links restricts the dependencies.
    tools = str(stage / "tools")
    _pip_on_disk(
        ["download", "--no-cache-dir", "--no-deps", "--only-binary=:all:", "--dest", tools, "pip"],
        "get pip as a wheel for the installer",
        env,
    )


def _write_manifest_to_disk(
    stage: Path,
    project_wheel: Path,
    wheels: Sequence[Wheel],
    python_tag: str,
    platform: str,
    extras: Sequence[str],
) -> None:
    files = {
        path.relative_to(stage).as_posix(): sha256_on_disk(path)
        for path in sorted(stage.rglob("*"))
        if path.is_file()
    }
    manifest = {
        "name": BUNDLE_NAME,
        "version": _version(),
        "python_tag": python_tag,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": platform,
        "installer": "install",
        "wheel": f"wheel/{project_wheel.name}",
        "extras": list(extras),
        "dependencies": [
            {
                "name": wheel.name,
                "version": wheel.version,
                "file": f"wheelhouse/{wheel.path.name}",
                "built_from_source": wheel.built_from_source,
            }
            for wheel in wheels
        ],
        "files": files,
    }
    (stage / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _stage_on_disk(
    stage: Path, find_links: Sequence[Path], extras: Sequence[str]
) -> Tuple[str, str]:
    """Fill ``stage`` with the bundle's files; returns the python tag and platform."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=_source_date_epoch(), PYTHONHASHSEED="0")
    project_wheel = _build_project_wheel_on_disk(stage, env)
    requirements = _runtime_requirements(project_wheel, extras)
    wheels = _get_dependencies_on_disk(stage / "wheelhouse", requirements, find_links, env)
    python_tag = _python_tag()
    platform = bundle_platform(wheels, _host_platform())
    _copy_installer_files_on_disk(stage, env)
    _write_manifest_to_disk(stage, project_wheel, wheels, python_tag, platform, extras)
    return python_tag, platform


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owner root, fixed time: two builds of the same tree give the same members."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int(_source_date_epoch())
    info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
    return info


def _write_tar_to_disk(stage: Path, top: str, target: Path) -> None:
    """Write the tar.gz under a temporary name next to ``target``, then rename it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with (
            os.fdopen(handle, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.add(stage, arcname=top, recursive=False, filter=_normalized)
            for path in sorted(stage.rglob("*")):
                arcname = f"{top}/{path.relative_to(stage).as_posix()}"
                tar.add(path, arcname=arcname, recursive=False, filter=_normalized)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_release_to_disk(
    dist: Path, find_links: Sequence[Path], extras: Sequence[str] = ()
) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-release.") as work:
        stage = Path(work) / "stage"
        stage.mkdir()
        python_tag, platform = _stage_on_disk(stage, find_links, extras)
        top = f"{BUNDLE_NAME}-{_version()}-{python_tag}-{platform}"
        target = dist / f"{top}.tar.gz"
        _write_tar_to_disk(stage, top, target)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dist", type=Path, default=REPO / "dist", help="folder of the bundle (default dist/)"
    )
    parser.add_argument(
        "--find-links",
        type=Path,
        action="append",
        default=None,
        help="take the runtime dependencies only from this folder of wheels/sdists"
        " (repeatable; default: the package stores pip is configured with;"
        " also BUILD_RELEASE_FIND_LINKS, colon-separated)",
    )
    parser.add_argument(
        "--with-server",
        action="store_true",
        help="carry codedeploy-server's dependencies too (for install --with-server)",
    )
    options = parser.parse_args(argv)
    find_links: List[Path] = options.find_links or [
        Path(p) for p in os.environ.get("BUILD_RELEASE_FIND_LINKS", "").split(":") if p
    ]
    for folder in find_links:
        if not folder.is_dir():
            print(f"{PROGRAM}: --find-links {folder} is not a folder", file=sys.stderr)
            return 1
    try:
        extras = [SERVER_EXTRA] if options.with_server else []
        target = build_release_to_disk(options.dist, find_links, extras)
    except ReleaseError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{PROGRAM}: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; no bundle written", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
