"""appspec.yml parsing and validation: the model produced, every rule's message, the files.

(Named test_appspec_parser.py, not test_parser.py: test folders have no ``__init__.py`` and
tests/deployment_specification/test_parser.py already holds that module name.)
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

from agent.application_specification.model import (
    DEFAULT_SCRIPT_TIMEOUT_SECONDS,
    ApplicationSpecification,
    AppSpecError,
    FileExistsBehavior,
    FileMapping,
    HookScript,
    ObjectType,
    Permission,
    SelinuxContext,
    SelinuxRange,
)
from agent.application_specification.parser import (
    check_hook_events,
    find_application_specification_file,
    parse_application_specification,
    read_application_specification,
)

FULL_APPSPEC = """\
version: 0.0
os: linux
files:
  - source: /
    destination: /var/www/html
  - source: config/app.conf
    destination: /etc/app/
permissions:
  - object: /var/www/html
    pattern: "*.sh"
    except: [secret.sh]
    owner: www-data
    group: www-data
    mode: 0750
    type:
      - file
  - object: /var/www/html/uploads
    owner: 33
    mode: "2775"
    acls:
      - u:deploy:rwx
      - d:g:web:5
    context:
      name: system_u
      type: httpd_sys_rw_content_t
      range: s0-s0:c0.c2,c5
hooks:
  ApplicationStop:
    - location: scripts/stop.sh
      timeout: 60
  BeforeInstall:
  AfterInstall:
    - location: /scripts/migrate.sh
      timeout: "900"
      runas: deploy
    - location: scripts/warm_cache.sh
      sudo: true
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 1.5
  ValidateService: []
file_exists_behavior: overwrite
resources: ignored
"""


def _parse(body: str, **kwargs: str) -> ApplicationSpecification:
    return parse_application_specification(textwrap.dedent(body), **kwargs)


def _error(body: str) -> str:
    with pytest.raises(AppSpecError) as caught:
        _parse(body)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith("appspec.yml: ")
    return message


def _with(section: str) -> str:
    return "version: 0.0\nos: linux\n" + textwrap.dedent(section)


# --------------------------------------------------------------------------- the model


def test_full_appspec_parses_into_the_model() -> None:
    spec = parse_application_specification(FULL_APPSPEC)

    assert spec.version == "0.0"
    assert spec.os == "linux"
    assert spec.files == (
        FileMapping(source="/", destination="/var/www/html"),
        FileMapping(source="config/app.conf", destination="/etc/app"),
    )
    assert spec.permissions == (
        Permission(
            object="/var/www/html",
            pattern="*.sh",
            excepts=("secret.sh",),
            types=(ObjectType.FILE,),
            owner="www-data",
            group="www-data",
            mode=0o750,
        ),
        Permission(
            object="/var/www/html/uploads",
            owner="33",
            mode=0o2775,
            acls=("user:deploy:rwx", "d:group:web:r-x"),
            context=SelinuxContext(
                type="httpd_sys_rw_content_t",
                name="system_u",
                range=SelinuxRange("s0", "s0:c0.c2,c5"),
            ),
        ),
    )
    assert spec.permissions[1].mode_text() == "2775"
    assert list(spec.hooks) == [
        "ApplicationStop",
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    assert spec.hooks["ApplicationStop"] == (HookScript("scripts/stop.sh", timeout=60.0),)
    assert spec.hooks["BeforeInstall"] == ()
    assert spec.hooks["AfterInstall"] == (
        HookScript("scripts/migrate.sh", timeout=900.0, runas="deploy"),
        HookScript("scripts/warm_cache.sh", timeout=DEFAULT_SCRIPT_TIMEOUT_SECONDS, sudo=True),
    )
    assert spec.hooks["ApplicationStart"] == (HookScript("scripts/start.sh", timeout=1.5),)
    assert spec.scripts_for("ValidateService") == ()
    assert spec.file_exists_behavior is FileExistsBehavior.OVERWRITE


def test_the_model_is_immutable() -> None:
    spec = parse_application_specification(FULL_APPSPEC)
    assert isinstance(spec.hooks, MappingProxyType)
    with pytest.raises(TypeError):
        spec.hooks["ApplicationStart"] = ()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.os = "windows"  # type: ignore[misc]
    assert isinstance(spec.files, tuple)
    assert isinstance(spec.permissions, tuple)


def test_minimal_appspec_has_defaults() -> None:
    spec = _parse("version: 0.0\nos: linux\n")
    assert spec == ApplicationSpecification(hooks=MappingProxyType({}))
    assert spec.file_exists_behavior is None


@pytest.mark.parametrize("version", ["0.0", "'0.0'", '"0.0"', "0", "0.00"])
def test_accepted_versions(version: str) -> None:
    assert _parse(f"version: {version}\nos: linux\n").version == "0.0"


# --------------------------------------------------------------------------- top level


@pytest.mark.parametrize("version", ["1.0", "'0.1'", "abc", "false", "[0.0]"])
def test_other_versions_are_refused(version: str) -> None:
    message = _error(f"version: {version}\nos: linux\n")
    assert message.startswith("appspec.yml: version must be 0.0")


def test_missing_version() -> None:
    assert "version is required" in _error("os: linux\n")


def test_windows_is_refused_as_unsupported() -> None:
    message = _error("version: 0.0\nos: windows\n")
    assert "os" in message and "Linux only" in message


@pytest.mark.parametrize("os_name", ["Linux", "macos", "1"])
def test_unknown_os(os_name: str) -> None:
    message = _error(f"version: 0.0\nos: {os_name}\n")
    assert message.startswith("appspec.yml: os must be linux, not ")


def test_missing_os() -> None:
    assert "appspec.yml: os is required" in _error("version: 0.0\n")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    assert "empty" in _error(text)


def test_top_level_must_be_a_mapping() -> None:
    assert "top level must be a mapping" in _error("- version: 0.0\n")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("DISALLOW", FileExistsBehavior.DISALLOW),
        ("retain", FileExistsBehavior.RETAIN),
        ("Overwrite", FileExistsBehavior.OVERWRITE),
    ],
)
def test_file_exists_behavior_is_case_insensitive(
    written: str, expected: FileExistsBehavior
) -> None:
    spec = _parse(_with(f"file_exists_behavior: {written}\n"))
    assert spec.file_exists_behavior is expected


def test_bad_file_exists_behavior() -> None:
    message = _error(_with("file_exists_behavior: KEEP\n"))
    assert 'file_exists_behavior must be DISALLOW or OVERWRITE or RETAIN, not "KEEP"' in message


def test_unknown_top_level_keys_are_ignored() -> None:
    spec = _parse(_with("resources:\n  - myLambda: {}\nnotes: [1, 2]\n42: x\n"))
    assert spec.hooks == {}


# --------------------------------------------------------------------------- YAML


def test_yaml_syntax_error_names_line_and_column() -> None:
    message = _error("version: 0.0\nos: linux\nhooks:\n  AfterInstall: - x: 1\n")
    assert message.startswith("appspec.yml: invalid YAML at line 4, column ")
    assert "Traceback" not in message


def test_yaml_error_uses_the_given_file_name() -> None:
    with pytest.raises(AppSpecError) as caught:
        parse_application_specification("a: [1, 2\n", filename="deploy/spec.yml")
    assert caught.value.message.startswith("deploy/spec.yml: invalid YAML at line ")


def test_unsafe_tags_are_refused() -> None:
    message = _error("version: 0.0\nos: !!python/object/apply:os.system [id]\n")
    assert message.startswith("appspec.yml: invalid YAML at line 2, column 5: ")


def test_control_characters_are_reported_with_their_position() -> None:
    message = _error("version: 0.0\nos: li\x07nux\n")
    assert message.startswith("appspec.yml: invalid YAML at line 2, column 7: ")
    assert "#x0007" in message


def test_duplicate_keys_are_refused() -> None:
    message = _error(
        _with(
            """\
            hooks:
              ApplicationStart:
                - location: a.sh
              ApplicationStart:
                - location: b.sh
            """
        )
    )
    assert message.startswith("appspec.yml: invalid YAML at line 6, column 3: ")
    assert '"ApplicationStart" appears twice' in message


def test_merge_keys_may_override() -> None:
    spec = _parse(
        _with(
            """\
            hooks:
              ApplicationStart:
                - &base {location: a.sh, timeout: 10}
                - <<: *base
                  timeout: 20
            """
        )
    )
    assert [script.timeout for script in spec.hooks["ApplicationStart"]] == [10.0, 20.0]


@pytest.mark.parametrize(
    ("text", "where"),
    [("os: !!timestamp soon\n", "line 1, column 5"), ("a:\n  b: 2001-13-45\n", "line 2, column 6")],
)
def test_unreadable_values_are_yaml_errors(text: str, where: str) -> None:
    message = _error(text)
    assert message == f"appspec.yml: invalid YAML at {where}: this value is not a valid timestamp"


def test_deep_nesting_is_a_yaml_error() -> None:
    assert "invalid YAML" in _error("a: " + "[" * 100000)


def test_two_documents_are_refused() -> None:
    assert "invalid YAML at line 3" in _error("version: 0.0\nos: linux\n---\nos: linux\n")


# --------------------------------------------------------------------------- files


def test_file_sources_are_normalised() -> None:
    spec = _parse(
        _with(
            """\
            files:
              - {source: /app/, destination: /opt/app/}
              - {source: ./lib//x/../y, destination: //srv/y}
              - {source: ., destination: /srv/all}
              - {source: //, destination: /srv/all2}
            """
        )
    )
    assert spec.files == (
        FileMapping("app", "/opt/app"),
        FileMapping("lib/y", "/srv/y"),
        FileMapping("/", "/srv/all"),
        FileMapping("/", "/srv/all2"),
    )


@pytest.mark.parametrize(
    ("entry", "field", "value"),
    [
        ("{destination: /x}", "files[0].source", "required"),
        ("{source: a}", "files[0].destination", "required"),
        ("{source: a, destination: relative/x}", "files[0].destination", '"relative/x"'),
        ("{source: a, destination: 7}", "files[0].destination", "7"),
        ("{source: '', destination: /x}", "files[0].source", '""'),
        (
            "{source: a, destination: /srv/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}",
            "files[0].destination",
            "at most 255",
        ),
        (
            "{source: a/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, destination: /srv}",
            "files[0].source",
            "at most 255",
        ),
        (
            "{source: a, destination: /a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/}",
            "files[0].destination",
            "at most 4095",
        ),
        ("{source: [a], destination: /x}", "files[0].source", "a list"),
        ("{source: ../etc, destination: /x}", "files[0].source", '"../etc"'),
        ("{source: /a/../../b, destination: /x}", "files[0].source", '"/a/../../b"'),
        ("{source: a, destination: /x, mode: 644}", "files[0].mode", "not a known setting"),
        ("just-a-string", "files[0]", '"just-a-string"'),
    ],
)
def test_file_entry_errors(entry: str, field: str, value: str) -> None:
    message = _error(_with(f"files:\n  - {entry}\n"))
    assert message.startswith(f"appspec.yml: {field} ")
    assert value in message


def test_files_must_be_a_list() -> None:
    message = _error(_with("files:\n  source: /\n  destination: /x\n"))
    assert message.startswith("appspec.yml: files must be a list")
    assert "not a mapping" in message


def test_error_index_points_at_the_bad_entry() -> None:
    message = _error(
        _with("files:\n  - {source: a, destination: /a}\n  - {source: b, destination: b}\n")
    )
    assert message.startswith("appspec.yml: files[1].destination must be an absolute path")
    assert message.endswith('not "b"')


# --------------------------------------------------------------------------- permissions


def _permission(body: str) -> Permission:
    spec = _parse(_with("permissions:\n  - object: /srv/app\n" + textwrap.indent(body, "    ")))
    return spec.permissions[0]


def _permission_error(body: str) -> str:
    return _error(_with("permissions:\n  - object: /srv/app\n" + textwrap.indent(body, "    ")))


@pytest.mark.parametrize(
    ("written", "mode"),
    [
        ("0644", 0o644),
        ("644", 0o644),
        ('"0755"', 0o755),
        ("'755'", 0o755),
        ("4755", 0o4755),
        ("0", 0),
        ("7", 0o7),
        ("00", 0),
    ],
)
def test_mode_is_read_from_its_text_as_octal(written: str, mode: int) -> None:
    assert _permission(f"mode: {written}\n").mode == mode


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("08", '"08"'),
        ("12345", "12345"),
        ("00644", "00644"),
        ("0x1ED", "0x1ED"),
        ('"rwxr-xr-x"', '"rwxr-xr-x"'),
        ("6.44", "6.44"),
        ("true", "true"),
        ("-644", "-644"),
        ("[644]", "a list"),
    ],
)
def test_bad_modes_name_the_value(written: str, shown: str) -> None:
    message = _permission_error(f"mode: {written}\n")
    assert message == (
        "appspec.yml: permissions[0].mode must be 1 to 4 octal digits such as 644 or 0755,"
        f" not {shown}"
    )


def test_mode_error_names_the_entry_index() -> None:
    message = _error(
        _with(
            """\
            permissions:
              - object: /a
                mode: 644
              - object: /b
                mode: 999
            """
        )
    )
    assert message.startswith("appspec.yml: permissions[1].mode ")
    assert message.endswith("not 999")


def test_permission_defaults() -> None:
    permission = _permission("{}\n".replace("{}\n", "owner: root\n"))
    assert permission == Permission(object="/srv/app", owner="root")
    assert permission.pattern == "**"
    assert permission.types == (ObjectType.FILE, ObjectType.DIRECTORY)


def test_permission_object_is_normalised() -> None:
    spec = _parse(_with("permissions:\n  - object: ' /srv//app/ '\n"))
    assert spec.permissions[0].object == "/srv/app"


@pytest.mark.parametrize(
    ("entry", "field", "value"),
    [
        ("{owner: root}", "permissions[0].object", "required"),
        ("{object: srv/app}", "permissions[0].object", '"srv/app"'),
        ("{object: /a, pattern: 'a/*'}", "permissions[0].pattern", '"a/*"'),
        ("{object: /a, pattern: ''}", "permissions[0].pattern", '""'),
        ("{object: /a, pattern: 5}", "permissions[0].pattern", "5"),
        ("{object: /a, except: '*.log'}", "permissions[0].except", '"*.log"'),
        ("{object: /a, except: [ok, 'x/y']}", "permissions[0].except[1]", '"x/y"'),
        ("{object: /a, type: file}", "permissions[0].type", '"file"'),
        ("{object: /a, type: []}", "permissions[0].type", "a list"),
        ("{object: /a, type: [file, link]}", "permissions[0].type[1]", '"link"'),
        ("{object: /a, owner: 'bad name'}", "permissions[0].owner", '"bad name"'),
        ("{object: /a, owner: -rf}", "permissions[0].owner", '"-rf"'),
        ("{object: /a, owner: 4294967295}", "permissions[0].owner", "4294967295"),
        (
            "{object: /a, group: 999999999999999999999999999999}",
            "permissions[0].group",
            "999999999999999999999999999999",
        ),
        (
            "{object: /srv/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}",
            "permissions[0].object",
            "at most 255",
        ),
        ("{object: /a, group: 'web:x'}", "permissions[0].group", '"web:x"'),
        ("{object: /a, group: true}", "permissions[0].group", "true"),
        ("{object: /a, acls: 'u:bob:rwx'}", "permissions[0].acls", '"u:bob:rwx"'),
        ("{object: /a, acls: [u:bob:rwz]}", "permissions[0].acls[0]", '"u:bob:rwz"'),
        ("{object: /a, acls: ['user::rwx']}", "permissions[0].acls[0]", "set the base entries"),
        ("{object: /a, acls: [5]}", "permissions[0].acls[0]", "5"),
        ("{object: /a, context: {name: system_u}}", "permissions[0].context.type", "required"),
        ("{object: /a, context: httpd_t}", "permissions[0].context", '"httpd_t"'),
        (
            "{object: /a, context: {type: t, range: s1-s0}}",
            "permissions[0].context.range",
            '"s1-s0"',
        ),
        (
            "{object: /a, context: {type: t, range: 's0:c1024'}}",
            "permissions[0].context.range",
            '"s0:c1024"',
        ),
        ("{object: /a, context: {type: 'a b'}}", "permissions[0].context.type", '"a b"'),
        ("{object: /a, context: {type: t, user: u}}", "permissions[0].context.user", "known"),
        ("{object: /a, mod: 644}", "permissions[0].mod", "not a known setting"),
        ("[object, /a]", "permissions[0]", "a list"),
    ],
)
def test_permission_entry_errors(entry: str, field: str, value: str) -> None:
    message = _error(_with(f"permissions:\n  - {entry}\n"))
    assert message.startswith(f"appspec.yml: {field} ")
    assert value in message


def test_context_role_is_refused() -> None:
    message = _permission_error("context: {type: httpd_t, role: object_r}\n")
    assert message.startswith("appspec.yml: permissions[0].context.role is not supported")
    assert '"object_r"' in message


def test_owner_and_group_numbers_become_text() -> None:
    permission = _permission("owner: 1000\ngroup: 0\n")
    assert (permission.owner, permission.group) == ("1000", "0")


def test_duplicate_types_collapse() -> None:
    assert _permission("type: [directory, file, directory]\n").types == (
        ObjectType.DIRECTORY,
        ObjectType.FILE,
    )


# --------------------------------------------------------------------------- hooks


def _hook_error(script: str, event: str = "ApplicationStart") -> str:
    return _error(_with(f"hooks:\n  {event}:\n    - {script}\n"))


@pytest.mark.parametrize(
    ("script", "field", "value"),
    [
        ("{timeout: 5}", "location", "required"),
        ("{location: ''}", "location", '""'),
        ("{location: '   '}", "location", '"   "'),
        ("{location: /}", "location", '"/"'),
        ("{location: ../x.sh}", "location", '"../x.sh"'),
        ("{location: scripts/../../x.sh}", "location", '"scripts/../../x.sh"'),
        ("{location: [a]}", "location", "a list"),
        ("{location: a.sh, timeout: -5}", "timeout", "-5"),
        ("{location: a.sh, timeout: 0}", "timeout", "0"),
        ("{location: a.sh, timeout: 0.0}", "timeout", "0.0"),
        ("{location: a.sh, timeout: true}", "timeout", "true"),
        ("{location: a.sh, timeout: 5m}", "timeout", '"5m"'),
        ("{location: a.sh, timeout: '-5'}", "timeout", '"-5"'),
        ("{location: a.sh, timeout: .inf}", "timeout", "inf"),
        ("{location: a.sh, timeout: [5]}", "timeout", "a list"),
        ("{location: a.sh, timeout: 3601}", "timeout", "3601"),
        ("{location: a.sh, timeout: 1000000000000000}", "timeout", "1000000000000000"),
        ("{location: a.sh, timeout: '1000000000000000'}", "timeout", '"1000000000000000"'),
        ("{location: a.sh, timeout: 1.0e+400}", "timeout", "inf"),
        ("{location: a.sh, timeout: .nan}", "timeout", "nan"),
        ("{location: a.sh, runas: 'bad user'}", "runas", '"bad user"'),
        ("{location: a.sh, runas: ''}", "runas", '""'),
        ("{location: a.sh, runas: -u}", "runas", '"-u"'),
        ("{location: a.sh, runas: false}", "runas", "false"),
        ("{location: a.sh, runas: 99999999999}", "runas", "99999999999"),
        (
            "{location: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sh}",
            "location",
            "at most 255",
        ),
        ("{location: a.sh, sudo: 'false'}", "sudo", '"false"'),
        ("{location: a.sh, sudo: 1}", "sudo", "1"),
        ("{location: a.sh, timout: 60}", "timout", "not a known setting"),
    ],
)
def test_script_errors(script: str, field: str, value: str) -> None:
    message = _hook_error(script)
    assert message.startswith(f"appspec.yml: hooks.ApplicationStart[0].{field} ")
    assert value in message


def test_timeout_message_reads_as_documented() -> None:
    assert _hook_error("{location: a.sh, timeout: -5}") == (
        "appspec.yml: hooks.ApplicationStart[0].timeout must be a number of seconds"
        " greater than 0, at most 3600, not -5"
    )


def test_the_longest_timeout_is_the_aws_one_hour() -> None:
    spec = _parse(_with("hooks:\n  ApplicationStart:\n    - {location: a.sh, timeout: 3600}\n"))
    assert spec.hooks["ApplicationStart"][0].timeout == 3600.0


def test_script_values_are_normalised() -> None:
    spec = _parse(
        _with(
            """\
            hooks:
              AfterInstall:
                - location: '  ./scripts//run.sh  '
                  timeout: ' 42 '
                  runas: ' ec2-user '
                  sudo: false
                - location: run.sh
                  runas: 1000
            """
        )
    )
    assert spec.hooks["AfterInstall"] == (
        HookScript("scripts/run.sh", timeout=42.0, runas="ec2-user", sudo=False),
        HookScript("run.sh", runas="1000"),
    )


def test_script_must_be_a_mapping() -> None:
    message = _error(_with("hooks:\n  ApplicationStart:\n    - scripts/start.sh\n"))
    assert message.startswith("appspec.yml: hooks.ApplicationStart[0] must be a mapping")


def test_event_scripts_must_be_a_list() -> None:
    message = _error(_with("hooks:\n  ApplicationStart:\n    location: a.sh\n"))
    assert message == (
        "appspec.yml: hooks.ApplicationStart must be a list of scripts, not a mapping"
    )


def test_hooks_must_be_a_mapping() -> None:
    assert _error(_with("hooks: [a]\n")).startswith("appspec.yml: hooks must be a mapping")


def test_event_names_must_be_text() -> None:
    assert "not 12" in _error(_with("hooks:\n  12: []\n"))


@pytest.mark.parametrize("event", ["DownloadBundle", "Install", "BlockTraffic", "AllowTraffic"])
def test_reserved_events_take_no_scripts(event: str) -> None:
    message = _hook_error("{location: a.sh}", event=event)
    assert message.startswith(f"appspec.yml: hooks.{event} must have no scripts")


def test_reserved_events_may_be_listed_empty() -> None:
    spec = _parse(_with("hooks:\n  Install:\n  DownloadBundle: []\n"))
    assert spec.hooks == {"Install": (), "DownloadBundle": ()}


# --------------------------------------------------------------------------- check_hook_events

CUSTOM_EVENTS_APPSPEC = """\
version: 0.0
os: linux
hooks:
  ApplicationStart:
    - location: start.sh
  Install:
  WarmCache:
    - location: warm.sh
  Smoke:
"""


def test_standard_events_pass() -> None:
    check_hook_events(parse_application_specification(FULL_APPSPEC), ())


def test_custom_events_need_to_be_allowed() -> None:
    spec = parse_application_specification(CUSTOM_EVENTS_APPSPEC)
    with pytest.raises(AppSpecError) as caught:
        check_hook_events(spec, ())
    message = caught.value.message
    assert message.startswith("appspec.yml: hooks.WarmCache, hooks.Smoke are neither ")
    assert "none were requested" in message
    assert "hooks.ApplicationStart" not in message and "hooks.Install" not in message


def test_only_the_missing_custom_event_is_named() -> None:
    spec = parse_application_specification(CUSTOM_EVENTS_APPSPEC)
    with pytest.raises(AppSpecError) as caught:
        check_hook_events(spec, ["WarmCache"], filename="custom.yml")
    message = caught.value.message
    assert message.startswith("custom.yml: hooks.Smoke is neither a standard lifecycle event")
    assert "(WarmCache)" in message


def test_allowed_custom_events_pass() -> None:
    spec = parse_application_specification(CUSTOM_EVENTS_APPSPEC)
    check_hook_events(spec, {"WarmCache", "Smoke", "Unused"})


def test_check_refuses_reserved_events_with_scripts() -> None:
    spec = ApplicationSpecification(hooks=MappingProxyType({"AllowTraffic": (HookScript("a.sh"),)}))
    with pytest.raises(AppSpecError) as caught:
        check_hook_events(spec, ["AllowTraffic"])
    assert caught.value.message.startswith("appspec.yml: hooks.AllowTraffic must have no scripts")


# --------------------------------------------------------------------------- files on disk

SIMPLE_APPSPEC = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: go.sh\n"


def test_reads_appspec_yml(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    (tmp_path / "appspec.yaml").write_text("not: used\n", encoding="utf-8")
    assert find_application_specification_file(tmp_path) == tmp_path / "appspec.yml"
    spec = read_application_specification(tmp_path)
    assert spec.hooks["ApplicationStart"] == (HookScript("go.sh"),)


def test_falls_back_to_appspec_yaml(tmp_path: Path) -> None:
    (tmp_path / "appspec.yaml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    assert find_application_specification_file(tmp_path) == tmp_path / "appspec.yaml"
    assert read_application_specification(tmp_path).scripts_for("ApplicationStart")


def test_errors_name_the_fallback_file(tmp_path: Path) -> None:
    (tmp_path / "appspec.yaml").write_text("version: 2\nos: linux\n", encoding="utf-8")
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(tmp_path)
    assert caught.value.message.startswith("appspec.yaml: version must be 0.0")


def test_custom_file_name(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "spec.yml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    (tmp_path / "appspec.yml").write_text("version: 3\n", encoding="utf-8")
    spec = read_application_specification(tmp_path, "deploy/spec.yml")
    assert spec.scripts_for("ApplicationStart") == (HookScript("go.sh"),)


def test_custom_file_name_has_no_fallback(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    with pytest.raises(AppSpecError) as caught:
        find_application_specification_file(tmp_path, "other.yml")
    assert caught.value.message == f"no other.yml found in the revision {tmp_path}"


def test_missing_file_names_folder_and_both_names(tmp_path: Path) -> None:
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(tmp_path)
    assert caught.value.message == (
        f"no appspec.yml or appspec.yaml found in the revision {tmp_path}"
    )


@pytest.mark.parametrize("name", ["../appspec.yml", "/etc/appspec.yml", "a/../../b.yml", ""])
def test_file_name_may_not_leave_the_revision(tmp_path: Path, name: str) -> None:
    revision = tmp_path / "revision"
    revision.mkdir()
    (tmp_path / "appspec.yml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    with pytest.raises(AppSpecError) as caught:
        find_application_specification_file(revision, name)
    assert "must be a relative path inside the revision" in caught.value.message


def test_symlink_out_of_the_revision_is_refused(tmp_path: Path) -> None:
    revision = tmp_path / "revision"
    revision.mkdir()
    outside = tmp_path / "outside.yml"
    outside.write_text(SIMPLE_APPSPEC, encoding="utf-8")
    (revision / "appspec.yml").symlink_to(outside)
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(revision)
    assert "leads outside the revision" in caught.value.message


def test_symlink_inside_the_revision_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.yml").write_text(SIMPLE_APPSPEC, encoding="utf-8")
    (tmp_path / "appspec.yml").symlink_to("real.yml")
    assert read_application_specification(tmp_path).scripts_for("ApplicationStart")


def test_a_folder_is_not_an_appspec(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").mkdir()
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(tmp_path)
    assert caught.value.message.startswith("appspec.yml: ")
    assert "not a regular file" in caught.value.message


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").write_bytes(b"version: 0.0\nos: linux # caf\xe9\n")
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(tmp_path)
    assert caught.value.message == (
        "appspec.yml: the file is not UTF-8 text (byte 0xe9 at offset 28); save it as UTF-8"
    )


def test_utf8_with_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").write_bytes(b"\xef\xbb\xbf" + SIMPLE_APPSPEC.encode("utf-8"))
    assert read_application_specification(tmp_path).os == "linux"


def test_syntax_error_in_a_file(tmp_path: Path) -> None:
    (tmp_path / "appspec.yml").write_text("version: 0.0\nos: [linux\n", encoding="utf-8")
    with pytest.raises(AppSpecError) as caught:
        read_application_specification(tmp_path)
    assert caught.value.message.startswith("appspec.yml: invalid YAML at line ")


@pytest.mark.parametrize("event", ["E" * 101, "'Bad Event'", "'ünïcode'", "'a.b'"])
def test_hook_event_names_are_bounded(event: str) -> None:
    message = _error(_with(f"hooks:\n  {event}:\n    - location: a.sh\n"))
    assert message.startswith("appspec.yml: hooks must be keyed by lifecycle event names")
    assert len(message) < 300
