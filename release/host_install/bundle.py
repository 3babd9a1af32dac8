"""Finding, unpacking and checking the release bundle the agent is installed from.

A bundle is what ``scripts/build-release`` makes: one top folder with ``MANIFEST.json``
(version, Python tag, platform, and the SHA-256 of every other file), the agent's wheel, a
wheelhouse of its dependencies, the unit file and the default configuration. Before anything
on the host changes, every file is checked against the manifest (a truncated copy from S3 is
refused, not half-installed) and the bundle's platform against this host's (architecture
and glibc version), so a bundle built for another host is one line, not a broken agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from host_install.errors import InstallError

MANIFEST = "MANIFEST.json"
BUNDLE_NAME = "codedeploy-agent-py"
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")


@dataclass(frozen=True)
class Bundle:
    folder: Path
    version: str
    python_tag: str
    python_version: str
    platform: str
    wheel: Path
    wheelhouse: Path
    pip_wheel: Optional[Path]
    unit_file: Path
    default_config: Path
    digest: str
    # The project's extras whose wheels the wheelhouse holds ("server": build --with-server).
    extras: Tuple[str, ...] = ()
    server_unit_file: Optional[Path] = None
    server_default_config: Optional[Path] = None

    @property
    def release_name(self) -> str:
        """The release's folder name: the version and a digest of the whole bundle, so a
        rebuilt bundle of the same version is a release of its own."""
        return f"{self.version}-{self.digest[:12]}"


def unpack_bundle_on_disk(archive: Path, into: Path) -> Path:
    """Unpack a bundle tar.gz into ``into``; returns its top folder. Members must be plain
    files and folders under one top folder (nothing absolute, no ``..``, no links)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1:
                raise InstallError(f"{archive} is not a release bundle (no single top folder)")
            for member in members:
                parts = member.name.split("/")
                if (
                    member.name.startswith("/")
                    or ".." in parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise InstallError(f"{archive} is not a release bundle ({member.name!r})")
            for member in members:
                target = into / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target, "wb") as stream:
                    while True:
                        block = source.read(1 << 20)
                        if not block:
                            break
                        stream.write(block)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, OSError) and error.filename is None and error.strerror:
            raise InstallError(f"cannot unpack {archive}: {error.strerror}") from error
        raise InstallError(f"cannot unpack {archive}: {error}") from error
    return into / tops.pop()


def sha256_on_disk(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundle_on_disk(folder: Path) -> Bundle:
    """The bundle in ``folder``, every file checked against its manifest."""
    manifest_path = folder / MANIFEST
    try:
        text = manifest_path.read_text(encoding="utf-8")
        manifest: Dict[str, Any] = json.loads(text)
        files: Dict[str, str] = manifest["files"]
        fields = {k: str(manifest[k]) for k in ("version", "python_tag", "platform", "wheel")}
    except FileNotFoundError:
        raise InstallError(f"{folder} is not a release bundle (no {MANIFEST})") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InstallError(f"{manifest_path} is not a bundle manifest ({error})") from error
    if manifest.get("name") != BUNDLE_NAME:
        raise InstallError(f"{folder} is a bundle of {manifest.get('name')!r}, not {BUNDLE_NAME}")
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise InstallError(f"the bundle is incomplete: {name} is missing")
        if sha256_on_disk(path) != expected:
            raise InstallError(f"the bundle is damaged: {name} does not match its manifest")
    pips = sorted((folder / "tools").glob("pip-*.whl"))
    return Bundle(
        folder=folder,
        version=fields["version"],
        python_tag=fields["python_tag"],
        python_version=str(manifest.get("python_version", "")),
        platform=fields["platform"],
        wheel=folder / fields["wheel"],
        wheelhouse=folder / "wheelhouse",
        pip_wheel=pips[-1] if pips else None,
        unit_file=folder / "systemd" / "codedeploy-agent.service",
        default_config=folder / "conf" / "codedeployagent.yml",
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        extras=tuple(str(e) for e in manifest.get("extras") or ()),
        server_unit_file=_if_present(folder / "systemd" / "codedeploy-server.service"),
        server_default_config=_if_present(folder / "conf" / "codedeploy-server.yml"),
    )


def _if_present(path: Path) -> Optional[Path]:
    """A file of newer bundles only (older ones have no server)."""
    return path if path.is_file() else None


def host_glibc() -> Optional[Tuple[int, int]]:
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    match = re.match(r"glibc (\d+)\.(\d+)", found)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_bundle_fits_host(bundle: Bundle, machine: str, glibc: Optional[Tuple[int, int]]) -> None:
    """Refuse a bundle whose wheels cannot run here (another architecture, a newer glibc)."""
    if bundle.platform == "any":
        return
    match = _MANYLINUX.match(bundle.platform)
    if match is None:
        if bundle.platform != f"linux_{machine}":
            raise InstallError(
                f"this bundle is for {bundle.platform}; this host is linux_{machine}"
            )
        return
    needed = (int(match.group(1)), int(match.group(2)))
    arch = match.group(3)
    if arch != machine:
        raise InstallError(
            f"this bundle is for {arch} hosts ({bundle.platform}); this host is {machine}:"
            f" use the bundle built for {machine}"
        )
    if glibc is None:
        raise InstallError(
            f"this bundle needs glibc {needed[0]}.{needed[1]} or newer ({bundle.platform});"
            " this host has no glibc"
        )
    if glibc < needed:
        raise InstallError(
            f"this bundle needs glibc {needed[0]}.{needed[1]} or newer ({bundle.platform});"
            f" this host has glibc {glibc[0]}.{glibc[1]}"
        )


def host_machine() -> str:
    return platform.machine()
