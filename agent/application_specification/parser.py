"""Read, parse and validate an ``appspec.yml`` into the typed model.

Everything an appspec can get wrong is caught here, once, before any script runs or any
file is copied, and reported as one sentence that starts with the file name and names the
field (``permissions[1].mode``) and the value. The rules follow the AWS agent, which this
agent replaces on the same hosts; we are stricter only where the AWS agent would crash or
silently do something harmful (unknown keys inside entries, duplicate keys, relative
destinations, paths leaving the revision). ``mode`` is read from the text as written, so
``mode: 0644`` means 0644 and not YAML's octal 420.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Tuple

import structlog
import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from agent.application_specification.model import (
    DEFAULT_APPSPEC_FILENAME,
    DEFAULT_SCRIPT_TIMEOUT_SECONDS,
    MAX_SCRIPT_TIMEOUT_SECONDS,
    ApplicationSpecification,
    AppSpecError,
    FileExistsBehavior,
    FileMapping,
    HookScript,
    ObjectType,
    Permission,
    SelinuxContext,
    SelinuxRange,
    appspec_file_names,
)
from agent.application_specification.permission_values import (
    SELINUX_IDENTIFIER,
    check_simple_glob,
    is_account_name,
    normalise_acl_entry,
    parse_mode_text,
    parse_selinux_range,
)
from agent.event_names import (
    EVENT_NAME_RULE,
    RESERVED_EVENTS,
    SCRIPT_EVENTS,
    is_event_name,
)

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

log = structlog.get_logger(__name__)

_TOP_LEVEL_KEYS = frozenset(
    {"version", "os", "files", "permissions", "hooks", "file_exists_behavior"}
)
_FILE_KEYS = ("source", "destination")
_PERMISSION_KEYS = (
    "object",
    "pattern",
    "except",
    "type",
    "owner",
    "group",
    "mode",
    "acls",
    "context",
)
_SCRIPT_KEYS = ("location", "timeout", "runas", "sudo")
_CONTEXT_KEYS = ("name", "type", "range")
_DIGITS = re.compile(r"[0-9]+")
_SHOWN_TEXT_LIMIT = 80


class _TextInt(int):
    """A YAML integer that remembers how it was written (``0644`` stays ``"0644"``)."""

    source_text: str = ""


class _AppSpecLoader(_BaseLoader):
    """The safe loader, plus: integers keep their text, and a repeated key is an error."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen: Dict[Tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            identity = (key_node.tag, key_node.value)
            if identity in seen:
                raise ConstructorError(
                    None,
                    None,
                    f"the key {json.dumps(key_node.value)} appears twice in the same mapping",
                    key_node.start_mark,
                )
            seen[identity] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # PyYAML's own constructors fail with plain exceptions on values such as
        # ``!!timestamp x`` or ``2001-13-45``; give them the position of the value.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError):
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConstructorError(
                None, None, f"this value is not a valid {tag}", node.start_mark
            ) from None


def _construct_text_int(loader: _AppSpecLoader, node: ScalarNode) -> int:
    value = _TextInt(loader.construct_yaml_int(node))
    value.source_text = node.value
    return value


_AppSpecLoader.add_constructor("tag:yaml.org,2002:int", _construct_text_int)


# --------------------------------------------------------------------------- messages


def _show(value: object) -> str:
    """Render a YAML value for a one-line message."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _TextInt):
        return value.source_text
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= _SHOWN_TEXT_LIMIT else value[:_SHOWN_TEXT_LIMIT] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _key_text(key: object) -> str:
    return key if isinstance(key, str) and key.isprintable() else _show(key)


def _invalid(filename: str, path: str, expected: str, value: object) -> AppSpecError:
    return AppSpecError(f"{filename}: {path} must be {expected}, not {_show(value)}")


def _missing(filename: str, path: str, expected: str) -> AppSpecError:
    return AppSpecError(f"{filename}: {path} is required and must be {expected}")


def _check_keys(filename: str, path: str, entry: Dict[Any, Any], allowed: Tuple[str, ...]) -> None:
    for key in entry:
        if key not in allowed:
            raise AppSpecError(
                f"{filename}: {path}.{_key_text(key)} is not a known setting"
                f" (the settings of {path} are {', '.join(allowed)})"
            )


# --------------------------------------------------------------------------- YAML


def _load_yaml(text: str, filename: str) -> object:
    try:
        # A subclass of the safe loader (C or Python), which S506 cannot tell.
        return yaml.load(text, Loader=_AppSpecLoader)  # noqa: S506
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join((error.problem or error.context or "invalid syntax").split())
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        raise AppSpecError(f"{filename}: invalid YAML{where}: {problem}") from None
    except yaml.reader.ReaderError as error:
        position = int(error.position)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        character = error.character
        code = f"#x{character:04x}" if isinstance(character, int) else repr(character)
        raise AppSpecError(
            f"{filename}: invalid YAML at line {line}, column {column}:"
            f" the character {code} is not allowed in YAML"
        ) from None
    except yaml.YAMLError as error:
        raise AppSpecError(f"{filename}: invalid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise AppSpecError(f"{filename}: invalid YAML: the document is nested too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as error:
        # A safety net behind _AppSpecLoader.construct_object, which gives a position.
        raise AppSpecError(
            f"{filename}: invalid YAML: a value cannot be read ({' '.join(str(error).split())})"
        ) from None


# --------------------------------------------------------------------------- paths


def _has_nul(text: str) -> bool:
    return "\0" in text


# Linux's limits: no file name, and no path, can be longer.
_NAME_MAX = 255
# The largest user or group id (2^32 - 1 means "no id").
_ID_MAX = 2**32 - 2
_PATH_MAX = 4095


def _check_path_length(filename: str, path: str, value: str) -> None:
    """Refuse now a path no file can have, rather than when Install or a hook gets to it."""
    if len(value) > _PATH_MAX or any(len(part) > _NAME_MAX for part in value.split("/")):
        raise _invalid(
            filename,
            path,
            f"a path of at most {_PATH_MAX} characters whose parts are at most {_NAME_MAX}",
            value,
        )


_ABSOLUTE_HOST_PATH = "an absolute path on the host"


def _required_path(
    filename: str,
    path: str,
    value: object,
    expected: str,
    *,
    valid: Callable[[str], object] = bool,
    stripped: bool = False,
) -> str:
    """The required path setting ``path``: a string without NUL that ``valid`` accepts and
    that a file can have (its length checked once ``stripped`` when asked)."""
    if value is None:
        raise _missing(filename, path, expected)
    if not isinstance(value, str) or _has_nul(value) or not valid(value):
        raise _invalid(filename, path, expected, value)
    _check_path_length(filename, path, value.strip() if stripped else value)
    return value


def _relative_inside_revision(text: str) -> Optional[str]:
    """``text`` as a normalised path relative to the revision root; ``""`` is the root.

    A leading ``/`` means the revision root, as in the AWS agent. ``None`` when ``..``
    would climb out of the revision.
    """
    depth = 0
    for component in text.split("/"):
        if component == "..":
            depth -= 1
            if depth < 0:
                return None
        elif component not in ("", "."):
            depth += 1
    normalised = posixpath.normpath(text.lstrip("/") or ".")
    return "" if normalised == "." else normalised


def _absolute_host_path(text: str) -> str:
    normalised = posixpath.normpath(text)
    return "/" + normalised.lstrip("/")


# --------------------------------------------------------------------------- top level


def _parse_version(filename: str, value: object) -> str:
    if value is None:
        raise _missing(filename, "version", "0.0")
    is_zero_number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
    if not (is_zero_number or (isinstance(value, str) and value.strip() == "0.0")):
        raise _invalid(filename, "version", "0.0 (the only appspec version)", value)
    return "0.0"


def _parse_os(filename: str, value: object) -> str:
    if value is None:
        raise _missing(filename, "os", "linux")
    if value == "windows":
        raise AppSpecError(
            f'{filename}: os is "windows", but this agent deploys to Linux only; use os: linux'
        )
    if value != "linux":
        raise _invalid(filename, "os", "linux", value)
    return "linux"


def _parse_file_exists_behavior(filename: str, value: object) -> Optional[FileExistsBehavior]:
    if value is None:
        return None
    choices = [member.value for member in FileExistsBehavior]
    if isinstance(value, str) and value.strip().upper() in choices:
        return FileExistsBehavior(value.strip().upper())
    raise _invalid(filename, "file_exists_behavior", " or ".join(choices), value)


# --------------------------------------------------------------------------- files


def _parse_files(filename: str, value: object) -> Tuple[FileMapping, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(filename, "files", "a list of source/destination mappings", value)
    return tuple(_parse_file(filename, f"files[{index}]", item) for index, item in enumerate(value))


def _parse_file(filename: str, path: str, entry: object) -> FileMapping:
    if not isinstance(entry, dict):
        raise _invalid(filename, path, "a mapping with source and destination", entry)
    _check_keys(filename, path, entry, _FILE_KEYS)

    source = _required_path(
        filename, f"{path}.source", entry.get("source"), "a path in the revision (/ for all of it)"
    )
    relative = _relative_inside_revision(source)
    if relative is None:
        raise _invalid(filename, f"{path}.source", "a path that stays inside the revision", source)

    destination = _required_path(
        filename,
        f"{path}.destination",
        entry.get("destination"),
        _ABSOLUTE_HOST_PATH,
        valid=lambda text: text.startswith("/"),
    )

    return FileMapping(source=relative or "/", destination=_absolute_host_path(destination))


# --------------------------------------------------------------------------- permissions


def _parse_permissions(filename: str, value: object) -> Tuple[Permission, ...]:
    # Only reached for os: linux; windows is refused before.
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(filename, "permissions", "a list of permission mappings", value)
    return tuple(
        _parse_permission(filename, f"permissions[{index}]", item)
        for index, item in enumerate(value)
    )


def _parse_permission(filename: str, path: str, entry: object) -> Permission:
    if not isinstance(entry, dict):
        raise _invalid(filename, path, "a mapping with at least object", entry)
    _check_keys(filename, path, entry, _PERMISSION_KEYS)

    target = _required_path(
        filename,
        f"{path}.object",
        entry.get("object"),
        _ABSOLUTE_HOST_PATH,
        valid=lambda text: text.strip().startswith("/"),
    )

    pattern = entry.get("pattern")
    if pattern is None:
        pattern = "**"
    elif pattern != "**":
        pattern = _simple_glob(filename, f"{path}.pattern", pattern)

    return Permission(
        object=_absolute_host_path(target.strip()),
        pattern=pattern,
        excepts=_parse_excepts(filename, f"{path}.except", entry.get("except")),
        types=_parse_types(filename, f"{path}.type", entry.get("type")),
        owner=_parse_account(filename, f"{path}.owner", entry.get("owner")),
        group=_parse_account(filename, f"{path}.group", entry.get("group")),
        mode=_parse_mode(filename, f"{path}.mode", entry.get("mode")),
        acls=_parse_acls(filename, f"{path}.acls", entry.get("acls")),
        context=_parse_context(filename, f"{path}.context", entry.get("context")),
    )


def _simple_glob(filename: str, path: str, value: object) -> str:
    if not isinstance(value, str):
        raise _invalid(filename, path, "a glob such as *.sh", value)
    try:
        check_simple_glob(value)
    except ValueError as reason:
        raise _invalid(filename, path, str(reason), value) from None
    return value


def _parse_excepts(filename: str, path: str, value: object) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(filename, path, "a list of globs such as [*.log, tmp]", value)
    return tuple(
        _simple_glob(filename, f"{path}[{index}]", item) for index, item in enumerate(value)
    )


def _parse_types(filename: str, path: str, value: object) -> Tuple[ObjectType, ...]:
    if value is None:
        return (ObjectType.FILE, ObjectType.DIRECTORY)
    expected = "a list of file and/or directory"
    if not isinstance(value, list) or not value:
        raise _invalid(filename, path, expected, value)
    types: List[ObjectType] = []
    for index, item in enumerate(value):
        if item not in ("file", "directory"):
            raise _invalid(filename, f"{path}[{index}]", "file or directory", item)
        if ObjectType(item) not in types:
            types.append(ObjectType(item))
    return tuple(types)


def _parse_account(filename: str, path: str, value: object) -> Optional[str]:
    if value is None:
        return None
    expected = "a user or group name or a numeric id"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _ID_MAX:
        return str(int(value))
    if not isinstance(value, str) or not is_account_name(value.strip()):
        raise _invalid(filename, path, expected, value)
    return value.strip()


def _parse_mode(filename: str, path: str, value: object) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, _TextInt):
        text = value.source_text
    elif isinstance(value, str):
        text = value.strip()
    else:
        text = ""
    try:
        return parse_mode_text(text)
    except ValueError:
        raise _invalid(filename, path, "1 to 4 octal digits such as 644 or 0755", value) from None


def _parse_acls(filename: str, path: str, value: object) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(filename, path, "a list of ACL entries such as user:alice:rw-", value)
    entries: List[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid(
                filename, f"{path}[{index}]", "an ACL entry such as user:alice:rw-", item
            )
        try:
            entries.append(normalise_acl_entry(item.strip()))
        except ValueError as reason:
            raise _invalid(filename, f"{path}[{index}]", str(reason), item) from None
    return tuple(entries)


def _parse_context(filename: str, path: str, value: object) -> Optional[SelinuxContext]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(filename, path, "a mapping with type (and optionally name and range)", value)
    if "role" in value:
        raise AppSpecError(
            f"{filename}: {path}.role is not supported (files always get the object_r role),"
            f" remove {_show(value['role'])}"
        )
    _check_keys(filename, path, value, _CONTEXT_KEYS)
    selinux_type = value.get("type")
    if selinux_type is None:
        raise _missing(filename, f"{path}.type", "an SELinux type such as httpd_sys_content_t")
    return SelinuxContext(
        type=_selinux_identifier(filename, f"{path}.type", selinux_type, "an SELinux type"),
        name=(
            None
            if value.get("name") is None
            else _selinux_identifier(filename, f"{path}.name", value["name"], "an SELinux user")
        ),
        range=_parse_range(filename, f"{path}.range", value.get("range")),
    )


def _selinux_identifier(filename: str, path: str, value: object, what: str) -> str:
    if not isinstance(value, str) or SELINUX_IDENTIFIER.fullmatch(value.strip()) is None:
        raise _invalid(filename, path, f"{what} name", value)
    return value.strip()


def _parse_range(filename: str, path: str, value: object) -> Optional[SelinuxRange]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(filename, path, "an SELinux range such as s0 or s0-s15:c0.c1023", value)
    try:
        return parse_selinux_range(value.strip())
    except ValueError as reason:
        raise _invalid(filename, path, f"an SELinux range with {reason}", value) from None


# --------------------------------------------------------------------------- hooks


def _parse_hooks(filename: str, value: object) -> Mapping[str, Tuple[HookScript, ...]]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise _invalid(
            filename, "hooks", "a mapping of lifecycle events to lists of scripts", value
        )
    hooks: Dict[str, Tuple[HookScript, ...]] = {}
    for event, scripts in value.items():
        if not isinstance(event, str) or not is_event_name(event):
            # The name reaches log lines, the script log and the hooks' environment.
            raise AppSpecError(
                f"{filename}: hooks must be keyed by lifecycle event names ({EVENT_NAME_RULE}),"
                f" not {_show(event)}"
            )
        path = f"hooks.{event}"
        if scripts is None:
            hooks[event] = ()
            continue
        if not isinstance(scripts, list):
            raise _invalid(filename, path, "a list of scripts", scripts)
        if event in RESERVED_EVENTS and scripts:
            raise AppSpecError(
                f"{filename}: {path} must have no scripts because the agent performs"
                f" {event} itself, not {len(scripts)} script(s)"
            )
        hooks[event] = tuple(
            _parse_script(filename, f"{path}[{index}]", item) for index, item in enumerate(scripts)
        )
    return MappingProxyType(hooks)


def _parse_script(filename: str, path: str, entry: object) -> HookScript:
    if not isinstance(entry, dict):
        raise _invalid(filename, path, "a mapping with location (and timeout, runas, sudo)", entry)
    _check_keys(filename, path, entry, _SCRIPT_KEYS)
    return HookScript(
        location=_parse_location(filename, f"{path}.location", entry.get("location")),
        timeout=_parse_timeout(filename, f"{path}.timeout", entry.get("timeout")),
        runas=_parse_runas(filename, f"{path}.runas", entry.get("runas")),
        sudo=_parse_sudo(filename, f"{path}.sudo", entry.get("sudo")),
    )


def _parse_location(filename: str, path: str, value: object) -> str:
    expected = "the path of a script in the revision"
    value = _required_path(filename, path, value, expected, valid=str.strip, stripped=True)
    relative = _relative_inside_revision(value.strip())
    if relative is None:
        raise _invalid(filename, path, "a script path that stays inside the revision", value)
    if not relative:
        raise _invalid(filename, path, expected, value)
    return relative


def _parse_timeout(filename: str, path: str, value: object) -> float:
    if value is None:
        return DEFAULT_SCRIPT_TIMEOUT_SECONDS
    seconds: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = None
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        seconds = float(int(value.strip()))
    # AWS bounds a script's timeout at an hour; anything beyond would also overflow the
    # timers that watch the script.
    if (
        seconds is None
        or not math.isfinite(seconds)
        or not 0 < seconds <= MAX_SCRIPT_TIMEOUT_SECONDS
    ):
        raise _invalid(
            filename,
            path,
            f"a number of seconds greater than 0, at most {MAX_SCRIPT_TIMEOUT_SECONDS:g}",
            value,
        )
    return seconds


def _parse_runas(filename: str, path: str, value: object) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _ID_MAX:
        text = str(int(value))
    elif isinstance(value, str):
        text = value.strip()
    else:
        text = ""
    if not is_account_name(text):
        raise _invalid(filename, path, "a user name", value)
    return text


def _parse_sudo(filename: str, path: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(filename, path, "true or false", value)
    return value


# --------------------------------------------------------------------------- public API


def parse_application_specification(
    text: str, *, filename: str = DEFAULT_APPSPEC_FILENAME
) -> ApplicationSpecification:
    """Parse and validate appspec text; every problem is an :class:`AppSpecError`."""
    document = _load_yaml(text, filename)
    if document is None:
        raise AppSpecError(f"{filename}: the file is empty; it must at least set version and os")
    if not isinstance(document, dict):
        raise AppSpecError(
            f"{filename}: the top level must be a mapping of version, os, files and hooks,"
            f" not {_show(document)}"
        )
    # The AWS agent ignores other keys (Lambda and ECS appspecs have ``resources``), but a
    # misspelt ``hooks`` would silently run nothing, so say what was ignored.
    ignored = sorted(str(key) for key in document if key not in _TOP_LEVEL_KEYS)
    if ignored:
        log.warning("appspec keys ignored", appspec=filename, keys=ignored)

    version = _parse_version(filename, document.get("version"))
    os_name = _parse_os(filename, document.get("os"))
    return ApplicationSpecification(
        version=version,
        os=os_name,
        files=_parse_files(filename, document.get("files")),
        permissions=_parse_permissions(filename, document.get("permissions")),
        hooks=_parse_hooks(filename, document.get("hooks")),
        file_exists_behavior=_parse_file_exists_behavior(
            filename, document.get("file_exists_behavior")
        ),
    )


def find_application_specification_file(
    revision_root: Path, filename: str = DEFAULT_APPSPEC_FILENAME
) -> Path:
    """Locate the appspec in an unpacked revision (on disk).

    The default name falls back to ``appspec.yaml``. The name must stay inside the
    revision, and so must the file it leads to when it is a symbolic link.
    """
    parts = filename.split("/")
    if not filename or filename.startswith("/") or ".." in parts or _has_nul(filename):
        raise AppSpecError(
            f"the appspec file name {_show(filename)} must be a relative path inside the"
            " revision, without .. components"
        )
    candidates = appspec_file_names(filename)
    for name in candidates:
        candidate = revision_root / name
        try:
            if not candidate.exists():
                continue
            inside = candidate.resolve().is_relative_to(revision_root.resolve())
            regular = candidate.is_file()
        except OSError as error:
            raise AppSpecError(f"{name}: cannot look at {candidate}: {error}") from None
        if not inside:
            raise AppSpecError(f"{name}: {candidate} leads outside the revision {revision_root}")
        if not regular:
            raise AppSpecError(f"{name}: {candidate} is not a regular file")
        return candidate
    raise AppSpecError(f"no {' or '.join(candidates)} found in the revision {revision_root}")


def read_application_specification(
    revision_root: Path, filename: str = DEFAULT_APPSPEC_FILENAME
) -> ApplicationSpecification:
    """Find, read (UTF-8, from disk) and parse the appspec of an unpacked revision."""
    path = find_application_specification_file(revision_root, filename)
    name = path.relative_to(revision_root).as_posix()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AppSpecError(f"{name}: cannot read {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AppSpecError(
            f"{name}: the file is not UTF-8 text (byte 0x{data[error.start]:02x}"
            f" at offset {error.start}); save it as UTF-8"
        ) from None
    return parse_application_specification(text, filename=name)


def check_deployment_events(
    spec: ApplicationSpecification,
    custom_events: Collection[str],
    *,
    filename: str = DEFAULT_APPSPEC_FILENAME,
    named_by: str = "the deployment",
) -> None:
    """Refuse an appspec that does not fit the events the deployment runs, before any
    script runs: a custom event that ``named_by`` names and the appspec has no hooks for,
    or a hook for an event nobody will run (:func:`check_hook_events`)."""
    missing = [event for event in custom_events if event not in spec.hooks]
    if missing:
        raise AppSpecError(
            f"{named_by} names {', '.join(missing)} as custom lifecycle events, but"
            f" {filename} has no hooks for them"
        )
    check_hook_events(spec, custom_events, filename=filename)


def check_hook_events(
    spec: ApplicationSpecification,
    allowed_custom_events: Collection[str],
    *,
    filename: str = DEFAULT_APPSPEC_FILENAME,
) -> None:
    """Refuse hook events this deployment will never run, before any script runs.

    An event is accepted when it is a standard lifecycle event, a reserved event without
    scripts, or one of ``allowed_custom_events``.
    """
    for event, scripts in spec.hooks.items():
        if event in RESERVED_EVENTS and scripts:
            raise AppSpecError(
                f"{filename}: hooks.{event} must have no scripts because the agent performs"
                f" {event} itself, not {len(scripts)} script(s)"
            )
    unknown = [
        event
        for event in spec.hooks
        if event not in SCRIPT_EVENTS
        and event not in RESERVED_EVENTS
        and event not in allowed_custom_events
    ]
    if not unknown:
        return
    fields = ", ".join(f"hooks.{event}" for event in unknown)
    verb = (
        "is neither a standard lifecycle event"
        if len(unknown) == 1
        else ("are neither standard lifecycle events")
    )
    requested = (
        f"the requested custom events ({', '.join(sorted(allowed_custom_events))})"
        if allowed_custom_events
        else "a requested custom event (none were requested)"
    )
    raise AppSpecError(f"{filename}: {fields} {verb} ({', '.join(SCRIPT_EVENTS)}) nor {requested}")
