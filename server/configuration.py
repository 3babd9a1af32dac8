"""The server's configuration: every key declared once, with its type, default, converter
and one line of documentation (docs/server.md's table is checked against it by a test).

The file is YAML (``/etc/codedeploy-server/server.yml`` unless ``--config`` names another;
the default file may be absent). Command-line options win over the file, the file over
the defaults. A bad value, an unknown key or an unreadable file is one line naming it:
unlike the agent, whose file may come from a newer agent, the server's own file has no
reason to hold a key this server does not know, and a typo must not pass silently.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import yaml

from agent.process_control import usable_cores
from server.errors import ServerConfigError

DEFAULT_CONFIG_FILE = Path("/etc/codedeploy-server/server.yml")
# server_processes when it is not set: one per core, at most this many.
MAX_DEFAULT_PROCESSES = 4
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+-\d+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_SIGNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_ ]{0,62}$")


@dataclass(frozen=True)
class ListenAddress:
    """Where the server listens: a host name or address and a port (0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(key: str, value: Any) -> ListenAddress:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.\-]+):(\d{1,5})", text)
    port = int((match.group(2) or match.group(4)) if match else -1)
    if match is None or not 0 <= port <= 65535:
        raise ServerConfigError(
            f"{key} must be HOST:PORT (port 0 to 65535, [ADDRESS]:PORT for IPv6), not {_shown(value)}"
        )
    return ListenAddress(match.group(1) or match.group(3), port)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _as_path(key: str, value: Any) -> Path:
    text = value if isinstance(value, str) else ""
    if not text.startswith("/") or "\0" in text or len(text) > 4095:
        raise ServerConfigError(f"{key} must be an absolute path, not {_shown(value)}")
    return Path(text)


def _as_optional_path(key: str, value: Any) -> Optional[Path]:
    return None if value is None or value == "" else _as_path(key, value)


def _as_database_url(key: str, value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else ""
    if not re.match(r"^(sqlite|postgresql)(\+[a-z0-9]+)?://", text):
        raise ServerConfigError(
            f"{key} must be a sqlite:///PATH or postgresql://... URL, not a {type(value).__name__}"
            if not text
            else f"{key} must be a sqlite:///PATH or postgresql://... URL"
        )
    return text


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not pattern.match(text):
            raise ServerConfigError(f"{key} must be {what}, not {_shown(value)}")
        return text

    return convert


def _number(minimum: float, maximum: float) -> Callable[[str, Any], float]:
    def convert(key: str, value: Any) -> float:
        number = math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        if not minimum <= number <= maximum:
            raise ServerConfigError(
                f"{key} must be a number from {minimum:g} to {maximum:g}, not {_shown(value)}"
            )
        return number

    return convert


def _whole_number(minimum: int, maximum: int) -> Callable[[str, Any], int]:
    def convert(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ServerConfigError(
                f"{key} must be a whole number from {minimum} to {maximum}, not {_shown(value)}"
            )
        return int(value)

    return convert


def _as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ServerConfigError(f"{key} must be true or false, not {_shown(value)}")
    return value


def _key(convert: Callable[[str, Any], Any], doc: str) -> Dict[str, Any]:
    return {"convert": convert, "doc": doc}


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of the server; see docs/server.md for the operator's view."""

    listen: ListenAddress = field(
        default=ListenAddress("127.0.0.1", 9190),
        metadata=_key(parse_listen_address, "HOST:PORT to listen on (HTTP, or HTTPS with TLS)"),
    )
    data_dir: Path = field(
        default=Path("/var/lib/codedeploy-server"),
        metadata=_key(_as_path, "the data folder: database, signer, nothing secret in clear"),
    )
    database_url: Optional[str] = field(
        default=None,
        metadata=_key(_as_database_url, "SQLAlchemy URL; default sqlite:///<data_dir>/server.db"),
    )
    master_key_file: Path = field(
        default=Path("/etc/codedeploy-server/master.key"),
        metadata=_key(_as_path, "the key that seals access-key secrets; outside the data folder"),
    )
    region: str = field(
        default="us-east-1",
        metadata=_key(_matching(_REGION, "an AWS region name"), "the region clients sign for"),
    )
    account_id: str = field(
        default="000000000000",
        metadata=_key(_matching(_ACCOUNT, "12 digits"), "the account id in the ARNs it makes"),
    )
    signer_name: str = field(
        default="codedeploy-server-signer",
        metadata=_key(
            _matching(_SIGNER_NAME, "a certificate common name of letters, digits, .-_"),
            "common name of the signer certificate made at first start",
        ),
    )
    tls_certificate_file: Optional[Path] = field(
        default=None,
        metadata=_key(_as_optional_path, "PEM certificate chain: serve HTTPS (with tls_key_file)"),
    )
    tls_key_file: Optional[Path] = field(
        default=None, metadata=_key(_as_optional_path, "PEM private key of that certificate")
    )
    clock_skew_seconds: float = field(
        default=300.0,
        metadata=_key(_number(1, 3600), "how far a request's signing time may be from ours"),
    )
    key_cache_seconds: float = field(
        default=2.0,
        metadata=_key(
            _number(0, 60),
            "how long a key, and a host's instance, is trusted before it is read again",
        ),
    )
    server_processes: Optional[int] = field(
        default=None,
        metadata=_key(
            _whole_number(1, 64),
            "processes that serve the port; default one per core, at most 4",
        ),
    )
    worker_threads: Optional[int] = field(
        default=None,
        metadata=_key(
            _whole_number(1, 256),
            "threads that run database work; default 2 with SQLite, 8 with PostgreSQL",
        ),
    )
    busy_request_limit: int = field(
        default=16,
        metadata=_key(
            _whole_number(0, 10000),
            "requests in progress at which polls hold new commands back (0: never)",
        ),
    )
    max_request_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata=_key(_whole_number(1024, 64 * 1024 * 1024), "largest request body accepted"),
    )
    poll_wait_seconds: float = field(
        default=20.0,
        metadata=_key(_number(0, 300), "how long an agent's poll waits for a command"),
    )
    host_command_timeout_seconds: float = field(
        default=3600.0,
        metadata=_key(
            _number(1, 7 * 24 * 3600), "how long a host has for each command before it fails"
        ),
    )
    shutdown_grace_seconds: float = field(
        default=30.0,
        metadata=_key(_number(1, 3600), "how long SIGTERM waits for requests in flight"),
    )
    verbose: bool = field(default=False, metadata=_key(_as_bool, "debug lines in the log"))

    # Where the settings came from (not a key).
    config_file: Optional[Path] = field(default=None, metadata={})

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'server.db'}"

    @property
    def effective_worker_threads(self) -> int:
        """SQLite has one writer at a time: more threads than two only contend for the
        interpreter (fewer measured faster under load); PostgreSQL's threads also wait on
        the network."""
        if self.worker_threads is not None:
            return self.worker_threads
        return 2 if self.effective_database_url.startswith("sqlite") else 8

    @property
    def effective_server_processes(self) -> int:
        """The server's work is the interpreter's (parsing, signing checks, JSON) more than
        the database's: one process per core it may run on, up to MAX_DEFAULT_PROCESSES
        (each takes about 90 MB), is what a fleet needs by default."""
        if self.server_processes is not None:
            return self.server_processes
        return max(1, min(MAX_DEFAULT_PROCESSES, usable_cores()))

    @property
    def tls_enabled(self) -> bool:
        return self.tls_certificate_file is not None


def configuration_keys() -> Dict[str, dataclasses.Field[Any]]:
    """The declared keys, in order: name to field (with ``convert`` and ``doc`` metadata)."""
    return {f.name: f for f in dataclasses.fields(ServerConfig) if "convert" in f.metadata}


def _checked(config: ServerConfig) -> ServerConfig:
    """Rules between keys."""
    if (config.tls_certificate_file is None) != (config.tls_key_file is None):
        raise ServerConfigError("tls_certificate_file and tls_key_file go together: set both")
    data = Path(config.data_dir).resolve()
    master = Path(config.master_key_file).resolve()
    if master == data or data in master.parents:
        raise ServerConfigError(
            f"master_key_file {config.master_key_file} is inside the data folder {config.data_dir};"
            " keep it apart (a copy of the data folder must not carry the key to its secrets)"
        )
    return config


def parse_server_config(
    text: str, *, source: Optional[Path] = None, overrides: Optional[Mapping[str, Any]] = None
) -> ServerConfig:
    """The configuration from YAML ``text``, then ``overrides`` (command-line options, as
    text), each value converted and checked."""
    name = str(source) if source else "configuration"
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ServerConfigError(f"{name} is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ServerConfigError(f"{name} must be a mapping of keys to values")
    keys = configuration_keys()
    values: Dict[str, Any] = {}
    for key, raw in document.items():
        declared = keys.get(str(key))
        if declared is None:
            raise ServerConfigError(
                f"{name}: unknown key {str(key)[:60]!r} (known: {', '.join(keys)})"
            )
        try:
            values[str(key)] = declared.metadata["convert"](str(key), raw)
        except ServerConfigError as error:
            raise ServerConfigError(f"{name}: {error.message}") from None
    for key, raw in (overrides or {}).items():
        values[key] = keys[key].metadata["convert"](f"--{key.replace('_', '-')}", raw)
    return _checked(ServerConfig(config_file=source, **values))


def read_server_config(
    path: Optional[Path], overrides: Optional[Mapping[str, Any]] = None
) -> ServerConfig:
    """Read the configuration file (reads the disk); ``None`` means the default file, which
    may be absent; a file named explicitly must exist."""
    source = path or DEFAULT_CONFIG_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path is not None:
            raise ServerConfigError(f"configuration file {source} does not exist") from None
        return parse_server_config("", overrides=overrides)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ServerConfigError(f"configuration file {source} cannot be read: {reason}") from None
    return parse_server_config(text, source=source, overrides=overrides)
