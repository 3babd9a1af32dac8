"""The installer's pieces that need no host: platform checks, the configuration reads, the
undo journal, bundle unpacking. (The installer as a whole runs in systemd boxes: see the
other test_install_*.py.)"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Optional, Tuple

import pytest

from host_install.actions import _config_with_proxy, configured_value_on_disk, is_system_folder
from host_install.bundle import Bundle, check_bundle_fits_host, unpack_bundle_on_disk
from host_install.errors import InstallError
from host_install.undo import UndoJournal


def _bundle(platform: str) -> Bundle:
    here = Path("/nowhere")
    return Bundle(here, "1.0", "cp311", "3.11", platform, here, here, None, here, here, "0" * 64)


@pytest.mark.parametrize(
    ("platform", "machine", "glibc", "refusal"),
    [
        ("manylinux_2_17_x86_64", "x86_64", (2, 36), None),
        ("manylinux_2_17_x86_64", "aarch64", (2, 36), "this bundle is for x86_64 hosts"),
        ("manylinux_2_28_x86_64", "x86_64", (2, 26), "needs glibc 2.28 or newer"),
        ("manylinux_2_17_x86_64", "x86_64", None, "this host has no glibc"),
        ("linux_x86_64", "x86_64", (2, 36), None),
        ("linux_x86_64", "aarch64", (2, 36), "this bundle is for linux_x86_64"),
        ("any", "riscv64", None, None),
    ],
)
def test_a_bundle_fits_only_hosts_its_wheels_run_on(
    platform: str, machine: str, glibc: Optional[Tuple[int, int]], refusal: Optional[str]
) -> None:
    if refusal is None:
        check_bundle_fits_host(_bundle(platform), machine, glibc)
        return
    with pytest.raises(InstallError, match=refusal):
        check_bundle_fits_host(_bundle(platform), machine, glibc)


def test_configured_values_are_read_in_both_key_styles(tmp_path: Path) -> None:
    config = tmp_path / "codedeployagent.yml"
    config.write_text(
        "---\n:log_dir: '/var/log/x/'\nroot_dir: /srv/root  # ours\n:proxy_uri:\n",
        encoding="utf-8",
    )
    assert configured_value_on_disk(config, "log_dir") == "/var/log/x/"
    assert configured_value_on_disk(config, "root_dir") == "/srv/root"
    assert configured_value_on_disk(config, "proxy_uri") is None
    assert configured_value_on_disk(config, "pid_dir") is None
    assert configured_value_on_disk(tmp_path / "absent.yml", "log_dir") is None


def test_a_proxy_replaces_the_commented_line_of_the_default_configuration() -> None:
    default = "---\n:verbose: false\n# :proxy_uri: 'http://proxy.example.com:3128'\n:x: 1\n"
    written = _config_with_proxy(default, "http://10.0.0.1:3128")
    assert written.splitlines() == [
        "---",
        ":verbose: false",
        ":proxy_uri: 'http://10.0.0.1:3128'",
        ":x: 1",
    ]
    assert _config_with_proxy(default, None) == default


@pytest.mark.parametrize(
    ("folder", "system"),
    [
        ("/", True),
        ("/var/log", True),
        ("/var/log/", True),
        ("/opt", True),
        ("/deploy", True),
        ("/var/lib/../log", True),
        ("/var/log/aws/codedeploy-agent", False),
        ("/srv/codedeploy-root", False),
    ],
)
def test_purge_never_takes_a_system_folder(folder: str, system: bool) -> None:
    assert is_system_folder(Path(folder)) is system


def test_the_undo_journal_puts_files_links_and_folders_back_newest_first(tmp_path: Path) -> None:
    kept = tmp_path / "kept.conf"
    kept.write_text("operator's\n", encoding="utf-8")
    os.chmod(kept, 0o600)
    link = tmp_path / "current"
    os.symlink("releases/old", link)
    journal = UndoJournal()
    journal.make_folders_on_disk(tmp_path / "a" / "b", 0o750)
    assert journal.replace_file_on_disk(kept, b"ours\n", 0o644)
    assert not journal.replace_file_on_disk(kept, b"ours\n", 0o644)  # already so
    journal.replace_file_on_disk(tmp_path / "new.conf", b"new\n", 0o640)
    journal.point_link_on_disk(link, Path("releases/new"))
    assert os.readlink(link) == "releases/new"
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o750

    assert journal.undo_all() == []
    assert kept.read_text(encoding="utf-8") == "operator's\n"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert os.readlink(link) == "releases/old"
    assert not (tmp_path / "new.conf").exists()
    assert not (tmp_path / "a").exists()


def test_an_undo_that_fails_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    journal = UndoJournal()
    made = tmp_path / "made"
    journal.created_on_disk(made)
    made.mkdir()

    def broken() -> None:
        raise OSError("disk gone")

    journal.record("something that cannot be undone", broken)
    assert journal.undo_all() == ["something that cannot be undone"]
    assert not made.exists()


def _tar_with(tmp_path: Path, name: str, link: bool = False) -> Path:
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        if link:
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    return archive


@pytest.mark.parametrize(
    ("name", "link"),
    [("top/../../escape", False), ("/top/absolute", False), ("top/link", True)],
)
def test_unpacking_refuses_what_no_bundle_holds(tmp_path: Path, name: str, link: bool) -> None:
    archive = _tar_with(tmp_path, name, link)
    into = tmp_path / "into"
    with pytest.raises(InstallError, match="is not a release bundle"):
        unpack_bundle_on_disk(archive, into)
    assert not into.exists()
