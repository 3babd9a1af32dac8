"""Revisions on disk for tests: folders written from a dict of files, bundles packed from
a folder as ``codedeploy-local`` users make them, and real tar and zip bundles crafted
member by member, hostile ones included.

tarfile and zipfile write whatever they are given, which is what makes them good at
crafting malicious members: absolute names, ``..``, links that point out, devices.
Every crafted member carries an explicit mode and mtime, so the tests never depend on the
umask.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

MTIME = 1_600_000_000  # 2020-09-13, an even number of seconds (zip keeps 2 s steps)


@dataclass(frozen=True)
class Member:
    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, fifo, chardev, blockdev
    data: bytes = b""
    mode: int = 0o644
    target: str = ""  # symlink or hard-link target
    mtime: int = MTIME
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""


def file(name: str, data: bytes = b"", mode: int = 0o644, mtime: int = MTIME) -> Member:
    return Member(name, "file", data, mode, mtime=mtime)


def folder(name: str, mode: int = 0o755, mtime: int = MTIME) -> Member:
    return Member(name, "dir", mode=mode, mtime=mtime)


def symlink(name: str, target: str) -> Member:
    return Member(name, "symlink", mode=0o777, target=target)


def hardlink(name: str, target: str) -> Member:
    return Member(name, "hardlink", target=target)


def special(name: str, kind: str) -> Member:
    return Member(name, kind)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}


def make_tar(path: Path, members: Iterable[Member], compression: str = "") -> Path:
    """A tar (``compression`` "" or "gz", "bz2", "xz") holding exactly ``members``."""
    with tarfile.open(path, f"w:{compression}", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = _TAR_TYPES[member.kind]
            info.mode = member.mode
            info.mtime = member.mtime
            info.uid, info.gid = member.uid, member.gid
            info.uname, info.gname = member.uname, member.gname
            info.linkname = member.target
            if member.kind in ("chardev", "blockdev"):
                info.devmajor, info.devminor = 1, 3
            content: Optional[io.BytesIO] = None
            if member.kind == "file":
                info.size = len(member.data)
                content = io.BytesIO(member.data)
            archive.addfile(info, content)
    return path


def make_zip(path: Path, members: Iterable[Member]) -> Path:
    """A zip holding exactly ``members`` (files, folders and symlinks, Unix modes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            local = time.localtime(member.mtime)[:6]
            name = (
                member.name + "/"
                if member.kind == "dir" and not member.name.endswith("/")
                else member.name
            )
            info = zipfile.ZipInfo(name, date_time=local)
            info.create_system = 3  # Unix, so that the external attributes hold a mode
            info.compress_type = zipfile.ZIP_DEFLATED
            if member.kind == "file":
                info.external_attr = (stat.S_IFREG | member.mode) << 16
                archive.writestr(info, member.data)
            elif member.kind == "dir":
                info.external_attr = ((stat.S_IFDIR | member.mode) << 16) | 0x10
                archive.writestr(info, b"")
            elif member.kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, member.target.encode())
            else:  # pragma: no cover - a test bug
                raise ValueError(member.kind)
    return path


def tree_snapshot(root: Path) -> Set[str]:
    """Every path under ``root`` (relative, folders marked with a slash), not following links."""
    found: Set[str] = set()
    for folder_path, folders, files in os.walk(root):
        base = Path(folder_path).relative_to(root)
        found.update(f"{base / name}/" for name in folders)
        found.update(str(base / name) for name in files)
    return found


def write_tree(root: Path, files: Dict[str, str], modes: Optional[Dict[str, int]] = None) -> Path:
    """Write ``files`` (relative name -> text) under ``root``; scripts ending in .sh get 0755."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if name.endswith(".sh"):
            path.chmod(0o755)
    for name, mode in (modes or {}).items():
        (root / name).chmod(mode)
    return root


def make_bundle(source: Path, bundle: Path, kind: str) -> Path:
    """Pack the folder ``source`` as tar, tgz or zip, keeping modes."""
    members: List[Path] = sorted(source.rglob("*"))
    if kind in ("tar", "tgz"):
        with tarfile.open(bundle, "w:gz" if kind == "tgz" else "w") as archive:
            for path in members:
                archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
    elif kind == "zip":
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in members:
                name = str(path.relative_to(source))
                if path.is_symlink():
                    # zipfile follows links; store the link itself, as zip -y does.
                    info = zipfile.ZipInfo(name)
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    archive.writestr(info, os.readlink(path))
                    continue
                info = zipfile.ZipInfo.from_file(path, name)
                if path.is_dir():
                    archive.writestr(info, b"")
                else:
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    else:  # pragma: no cover - a test bug
        raise ValueError(kind)
    return bundle
