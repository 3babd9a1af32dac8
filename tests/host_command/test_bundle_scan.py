"""Reading a bundle through without writing: its appspec, its paths, what it refuses."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from agent.application_specification.model import AppSpecError
from agent.deployment_specification.model import BundleType
from agent.host_command.bundle import DEFAULT_POLICY, BundleError, UnpackPolicy
from agent.host_command.bundle_scan import scan_bundle_on_disk

NAMES = ("appspec.yml", "appspec.yaml")
APPSPEC = b"version: 0.0\nos: linux\n"


def _tar(
    path: Path, members: List[Tuple[str, bytes, Optional[str], bytes]], compression: str = ""
) -> Path:
    """members: (name, type, link target, data)."""
    with tarfile.open(path, "w:" + compression) as archive:
        for name, kind, target, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if target is not None:
                info.linkname = target
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def test_index_follows_the_revision_root_and_knows_implied_folders(tmp_path: Path) -> None:
    bundle = _tar(
        tmp_path / "b.tgz",
        [
            ("project/appspec.yml", tarfile.REGTYPE, None, APPSPEC),
            ("project/hooks/deep/start.sh", tarfile.REGTYPE, None, b"#!/bin/sh\n"),
            ("project/hooks/link.sh", tarfile.SYMTYPE, "deep/start.sh", b""),
            ("project/hooks/hard.sh", tarfile.LNKTYPE, "project/hooks/deep/start.sh", b""),
            ("project/hooks/hard-link.sh", tarfile.LNKTYPE, "project/hooks/link.sh", b""),
        ],
        "gz",
    )
    scan = scan_bundle_on_disk(bundle, BundleType.TGZ, NAMES, DEFAULT_POLICY)
    assert (scan.appspec_member, scan.appspec, scan.root) == (
        "project/appspec.yml",
        APPSPEC,
        b"project",
    )
    assert scan.kind_of(b"hooks")[0] == stat.S_IFDIR  # no folder member, implied
    assert scan.kind_of(b"hooks/deep/start.sh")[0] == stat.S_IFREG
    assert scan.kind_of(b"hooks/hard.sh")[0] == stat.S_IFREG
    assert scan.kind_of(b"hooks/link.sh") == (stat.S_IFLNK, b"deep/start.sh")
    assert scan.kind_of(b"hooks/hard-link.sh") == (stat.S_IFLNK, b"deep/start.sh")
    assert scan.kind_of(b"hooks/absent.sh") == (None, b"")


@pytest.mark.parametrize(
    ("policy", "members", "refusal"),
    [
        (
            UnpackPolicy(max_extraction_size=100),
            [("big.bin", tarfile.REGTYPE, None, b"x" * 200)],
            "larger than archive_max_extraction_size",
        ),
        (
            UnpackPolicy(reject_symlinks=True),
            [("l", tarfile.SYMTYPE, "appspec.yml", b"")],
            "reject_symlinks_in_bundle",
        ),
        (DEFAULT_POLICY, [("pipe", tarfile.FIFOTYPE, None, b"")], "is a FIFO"),
        (DEFAULT_POLICY, [("h", tarfile.LNKTYPE, "../x", b"")], "'..' component"),
    ],
)
def test_members_the_unpacker_refuses_are_refused(
    tmp_path: Path,
    policy: UnpackPolicy,
    members: List[Tuple[str, bytes, Optional[str], bytes]],
    refusal: str,
) -> None:
    bundle = _tar(tmp_path / "b.tar", [("appspec.yml", tarfile.REGTYPE, None, APPSPEC), *members])
    with pytest.raises(BundleError, match=refusal):
        scan_bundle_on_disk(bundle, BundleType.TAR, NAMES, policy)


def test_no_appspec_where_the_unpacker_looks(tmp_path: Path) -> None:
    bundle = _tar(
        tmp_path / "b.tar",
        [
            ("a/appspec.yml", tarfile.REGTYPE, None, APPSPEC),
            ("b/other", tarfile.REGTYPE, None, b""),
        ],
    )
    with pytest.raises(
        AppSpecError, match=r"has no appspec\.yml or appspec\.yaml at its top level"
    ):
        scan_bundle_on_disk(bundle, BundleType.TAR, NAMES, DEFAULT_POLICY)
