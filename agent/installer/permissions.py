"""The appspec's ``permissions`` (Linux): checked while planning, applied after the copy.

A permission applies to the paths this install created below its ``object`` (never to the
object itself, unless the object is a file the install copied), filtered by ``pattern``
(``**`` is everything below, anything else a ``*`` glob on direct children), ``except``
(``*`` globs on the name) and ``type``. On each path it sets, in order, the mode, the ACL
entries (``setfacl``), the SELinux context (``semanage fcontext`` + ``restorecon``) and
the owner/group. Symlinks are left alone: chmod, setfacl and restorecon would act on
whatever they point to. Below the object, paths are reached through folder descriptors
(:mod:`agent.installer.folders`): a symlink planted in place of an installed folder is
never followed, and mode and owner are set on the file opened without following a link.
With ``reject_symlink_permission_targets`` such a symlink refuses the install instead of
being reported and skipped. Owners, groups and the tools are resolved before anything is
copied, so a typo refuses the install instead of leaving it half done.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Pattern, Sequence, Set, Tuple

import structlog

from agent.application_specification.model import ObjectType, Permission
from agent.installer.cleanup import CleanupFileWriter
from agent.installer.folders import FolderWalker, SymlinkNotFollowed
from agent.installer.instructions import InstructionsFileWriter
from agent.installer.paths import is_within, normalise_absolute
from agent.installer.result import InstallError

log = structlog.get_logger(__name__)

# setfacl and restorecon take many paths per call; this bounds one command line.
_BATCH_SIZE = 256
_LEAF_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_NAME = re.compile(r"/proc/self/fd/[0-9]+")


@dataclass(frozen=True)
class PermissionTools:
    """Full paths of the external tools permissions need; None when not installed."""

    setfacl: Optional[str]
    semanage: Optional[str]
    restorecon: Optional[str]


def find_permission_tools() -> PermissionTools:
    """Look the tools up on ``PATH``."""
    return PermissionTools(
        setfacl=shutil.which("setfacl"),
        semanage=shutil.which("semanage"),
        restorecon=shutil.which("restorecon"),
    )


@dataclass(frozen=True)
class ResolvedPermission:
    """One ``permissions`` entry made ready to match paths: globs compiled, ids resolved."""

    number: int  # position in the appspec, from 1
    permission: Permission
    object: str  # normalised absolute path
    pattern: Optional[Pattern[str]]  # None for ``**``
    excepts: Tuple[Pattern[str], ...]
    uid: int  # -1 when no owner is set
    gid: int  # -1 when no group is set
    default_acl: bool  # has ``d:`` entries, which only folders accept

    def describe(self) -> str:
        return f"permissions entry {self.number} (object {self.permission.object!r})"

    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether this entry applies to the installed ``path`` (a folder or a file)."""
        wanted = ObjectType.DIRECTORY if is_dir else ObjectType.FILE
        if path == self.object:
            return not is_dir and wanted in self.permission.types
        below = self.object if self.object.endswith("/") else self.object + "/"
        if not path.startswith(below):
            return False
        relative = path[len(below) :]
        if self.pattern is not None and ("/" in relative or not self.pattern.fullmatch(relative)):
            return False
        name = relative[relative.rfind("/") + 1 :]
        if any(excepted.fullmatch(name) for excepted in self.excepts):
            return False
        return wanted in self.permission.types

    def check_file_object(self, path: str) -> None:
        """Refuse settings a file cannot take, once ``path`` is known to be a matched file."""
        if path == self.object and (self.permission.pattern != "**" or self.permission.excepts):
            raise InstallError(
                f"{self.describe()}: the object is a file, so pattern must be '**' and"
                " except must be empty"
            )
        if self.default_acl:
            raise InstallError(
                f"{self.describe()}: default ACL entries (d:...) apply to folders only,"
                f" but it matches the file {path}"
            )


def resolve_permissions(
    permissions: Sequence[Permission], tools: PermissionTools
) -> Tuple[ResolvedPermission, ...]:
    """Check every entry against this host and compile it; raises InstallError."""
    users: Dict[str, int] = {}
    groups: Dict[str, int] = {}
    resolved: List[ResolvedPermission] = []
    for number, permission in enumerate(permissions, start=1):
        where = f"permissions entry {number} (object {permission.object!r})"
        if not permission.object.startswith("/"):
            raise InstallError(f"{where}: the object must be an absolute path")
        if permission.acls and tools.setfacl is None:
            raise InstallError(
                f"{where} sets acls but setfacl is not installed on this host:"
                " install the 'acl' package"
            )
        if permission.context is not None and (tools.semanage is None or tools.restorecon is None):
            raise InstallError(
                f"{where} sets an SELinux context but semanage or restorecon is not installed"
                " on this host: install the SELinux policy tools (policycoreutils)"
            )
        for entry in permission.acls:
            _check_acl_names(where, entry, users, groups)
        resolved.append(
            ResolvedPermission(
                number=number,
                permission=permission,
                object=normalise_absolute(permission.object),
                pattern=None if permission.pattern == "**" else _glob(permission.pattern),
                excepts=tuple(_glob(excepted) for excepted in permission.excepts),
                uid=-1 if permission.owner is None else _uid(where, permission.owner, users),
                gid=-1 if permission.group is None else _gid(where, permission.group, groups),
                default_acl=any(_is_default_acl(entry) for entry in permission.acls),
            )
        )
    return tuple(resolved)


def apply_permissions_on_disk(
    permissions: Sequence[ResolvedPermission],
    installed_paths: Iterable[str],
    tools: PermissionTools,
    cleanup: CleanupFileWriter,
    instructions: InstructionsFileWriter,
    reject_symlinks: bool = False,
) -> int:
    """Apply each entry to the installed paths it matches; returns how many paths it set.

    The plan has already refused paths matched twice, so the first match is the only one.
    Paths are handled in batches of one entry so that setfacl and restorecon run once per
    batch rather than once per path. ``reject_symlinks``: a symlink met on the way to a
    matched path, or as the path, refuses the install (else it is reported and skipped).
    """
    if not permissions:
        return 0
    objects = tuple(permission.object for permission in permissions)
    targets = _Targets(objects, reject_symlinks)
    with targets.walker:
        applied = 0
        batch: List[str] = []
        current: Optional[ResolvedPermission] = None
        for path in installed_paths:
            if not any(is_within(path, folder) for folder in objects):
                continue  # decided by the path alone, without a stat
            mode = targets.mode_on_disk(path, permissions)
            if mode is None or stat.S_ISLNK(mode):
                continue
            is_dir = stat.S_ISDIR(mode)
            match = next((p for p in permissions if p.matches(path, is_dir)), None)
            if match is None:
                continue
            if match is not current or len(batch) >= _BATCH_SIZE:
                if current is not None:
                    _apply_batch_on_disk(current, batch, tools, cleanup, instructions, targets)
                applied += len(batch)
                batch = []
                current = match
            batch.append(path)
        if current is not None:
            _apply_batch_on_disk(current, batch, tools, cleanup, instructions, targets)
        return applied + len(batch)


class _Targets:
    """Reaches the paths permissions apply to without following a symlink below an object."""

    def __init__(self, objects: Tuple[str, ...], reject_symlinks: bool) -> None:
        self.objects = objects
        self.reject_symlinks = reject_symlinks
        # Below an object, only the administrator's own symlinks are followed, and none
        # when symlinks are rejected.
        trusted = None if reject_symlinks else os.geteuid()
        self.walker = FolderWalker(self._below_an_object, trusted)
        self._reported: Set[str] = set()

    def _below_an_object(self, path: str) -> bool:
        return any(path != folder and is_within(path, folder) for folder in self.objects)

    def mode_on_disk(self, path: str, permissions: Sequence[ResolvedPermission]) -> Optional[int]:
        """The type and mode of ``path``, None when it is gone or cannot be reached safely."""
        mode = self._reach_on_disk(path, _mode_in)
        if (
            mode is not None
            and stat.S_ISLNK(mode)
            and self.reject_symlinks
            and any(p.matches(path, False) for p in permissions)
        ):
            self.refuse(path, f"{path} is a symlink")
        return mode

    def refuse(self, path: str, reason: str) -> None:
        """Refuse the install (symlinks rejected) or report ``path`` once and go on."""
        if self.reject_symlinks:
            raise InstallError(
                f"{reason}; reject_symlink_permission_targets is set, so permissions are"
                " never applied through a symlink"
            )
        if path not in self._reported:
            self._reported.add(path)
            log.warning("permissions: a symlink is not followed", reason=reason)

    def open_leaf_on_disk(self, path: str) -> Optional[int]:
        """An ``O_PATH`` descriptor of ``path`` itself (never a link's target); None when
        it vanished or became a symlink."""
        fd = self._reach_on_disk(path, _open_in)
        if fd is not None and stat.S_ISLNK(os.fstat(fd).st_mode):
            os.close(fd)
            self.refuse(path, f"{path} is a symlink")
            return None
        return fd

    def _reach_on_disk(self, path: str, action: Callable[[int, str], int]) -> Optional[int]:
        """``action(folder descriptor, name)`` on ``path``; None when it is gone or behind
        a symlink that is not followed."""
        folder, name = os.path.split(path)
        try:
            return action(self.walker.open_folder_on_disk(folder), name)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except SymlinkNotFollowed as refused:
            self.refuse(refused.path, refused.message)
            return None
        except OSError as error:
            raise _permission_error(path, error) from error


def _mode_in(folder_fd: int, name: str) -> int:
    return os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode


def _open_in(folder_fd: int, name: str) -> int:
    return os.open(name, _LEAF_FLAGS, dir_fd=folder_fd)


def _apply_batch_on_disk(
    resolved: ResolvedPermission,
    paths: Sequence[str],
    tools: PermissionTools,
    cleanup: CleanupFileWriter,
    instructions: InstructionsFileWriter,
    targets: _Targets,
) -> None:
    permission = resolved.permission
    mode_text = permission.mode_text()
    if permission.mode is not None and mode_text is not None:
        for path in paths:
            _set_on_disk(targets, path, mode=permission.mode)
            instructions.chmod(path, mode_text)
    if permission.acls and tools.setfacl is not None:
        command = [tools.setfacl, "--modify", ",".join(permission.acls)]
        _run_tool_on_open_paths_on_disk(command, paths, resolved, targets)
        for path in paths:
            instructions.setfacl(path, permission.acls)
    context = permission.context
    if context is not None and tools.semanage is not None and tools.restorecon is not None:
        options = ["-t", context.type]
        if context.name is not None:
            options += ["-s", context.name]
        if context.range is not None:
            options += ["-r", context.range.render()]
        for path in paths:
            # Recorded first: a rule added just before a crash is still removed next time.
            cleanup.append_context_record(path)
            _run_tool([tools.semanage, "fcontext", "-a", *options], [path], resolved)
            instructions.semanage(path, context)
        _run_tool([tools.restorecon, "-v"], paths, resolved)
    if permission.owner is not None or permission.group is not None:
        for path in paths:
            _set_on_disk(targets, path, owner=(resolved.uid, resolved.gid))
            instructions.chown(path, permission.owner, permission.group)


def _set_on_disk(
    targets: _Targets,
    path: str,
    mode: Optional[int] = None,
    owner: Optional[Tuple[int, int]] = None,
) -> None:
    """chmod or chown the file or folder ``path`` itself, reached without following links."""
    fd = targets.open_leaf_on_disk(path)
    if fd is None:
        return
    # An O_PATH descriptor takes no fchmod; its /proc name reaches the very same inode.
    through = f"/proc/self/fd/{fd}"
    try:
        if mode is not None:
            os.chmod(through, mode)
        if owner is not None:
            os.chown(through, *owner)
    except OSError as error:
        raise _permission_error(path, error) from error
    finally:
        os.close(fd)


def _permission_error(path: str, error: OSError) -> InstallError:
    return InstallError(f"cannot set the permissions of {path}: {error.strerror}")


def _run_tool_on_open_paths_on_disk(
    command: List[str], paths: Sequence[str], resolved: ResolvedPermission, targets: _Targets
) -> None:
    """Run ``command`` on the files and folders ``paths`` name, opened without following a
    link: the tool is given their ``/proc/self/fd`` names, which lead to those very inodes."""
    fds: List[int] = []
    names: Dict[str, str] = {}
    try:
        for path in paths:
            fd = targets.open_leaf_on_disk(path)
            if fd is not None:
                fds.append(fd)
                names[f"/proc/self/fd/{fd}"] = path
        if fds:
            _run_tool(command, list(names), resolved, shown=names, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)


def _run_tool(
    command: List[str],
    paths: Sequence[str],
    resolved: ResolvedPermission,
    shown: Optional[Dict[str, str]] = None,
    pass_fds: Sequence[int] = (),
) -> None:
    """Run ``command`` on ``paths``; a failure names the entry, the tool and a path.

    ``shown`` maps the ``/proc/self/fd`` names given to the tool back to the paths.
    """
    argv = [*command, *paths]
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            pass_fds=tuple(pass_fds),
        )
    except OSError as error:
        raise InstallError(
            f"{resolved.describe()}: cannot run {argv[0]}: {error.strerror}"
        ) from error
    if completed.returncode != 0:
        lines = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit code {completed.returncode}"
        first = paths[0]
        if shown:
            first = shown[first]
            reason = _FD_NAME.sub(lambda found: shown.get(found.group(0), found.group(0)), reason)
        more = f" (and {len(paths) - 1} more paths)" if len(paths) > 1 else ""
        raise InstallError(
            f"{resolved.describe()}: {os.path.basename(argv[0])} failed on {first}{more}: {reason}"
        )


def _glob(pattern: str) -> Pattern[str]:
    """A glob where only ``*`` is special (any run of characters, ``/`` excluded by callers)."""
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split("*")), re.DOTALL)


def _is_default_acl(entry: str) -> bool:
    return entry.startswith(("d:", "default:"))


def _check_acl_names(where: str, entry: str, users: Dict[str, int], groups: Dict[str, int]) -> None:
    fields = entry.split(":")
    if fields and fields[0] in ("d", "default"):
        fields = fields[1:]
    if len(fields) < 2 or not fields[1] or fields[1].isdigit():
        return
    if fields[0] in ("u", "user"):
        _uid(where, fields[1], users)
    elif fields[0] in ("g", "group"):
        _gid(where, fields[1], groups)


def _uid(where: str, name: str, cache: Dict[str, int]) -> int:
    return _account_id(where, "user", name, cache, lambda: pwd.getpwnam(name).pw_uid)


def _gid(where: str, name: str, cache: Dict[str, int]) -> int:
    return _account_id(where, "group", name, cache, lambda: grp.getgrnam(name).gr_gid)


def _account_id(
    where: str, kind: str, name: str, cache: Dict[str, int], look_up: Callable[[], int]
) -> int:
    """The id of the user or group ``name`` (looked up once per install)."""
    if name not in cache:
        try:
            cache[name] = look_up()
        except KeyError:
            raise InstallError(f"{where}: {kind} {name!r} does not exist on this host") from None
    return cache[name]
