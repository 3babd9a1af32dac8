"""The value rules of configuration keys: each turns a YAML value into a typed one.

A converter takes the key's name and the value as YAML read it, and returns the typed
value or raises :class:`ConfigError` naming the key and the value (shortened when huge).
Numbers are bounded: NaN, infinity and absurd values would reach timers and sockets that
overflow or never fire. A converter that returns ``None`` (an empty value) leaves the key
at its default.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from agent.configuration.errors import ConfigError
from agent.deployment_root.names import ROOT_BOOKKEEPING_NAMES, unsafe_root_entry_reason

Converter = Callable[[str, Any], Any]

# No disk holds more; beyond it float sizes lose their meaning (and 1e400 is infinity).
SIZE_MAX = 1024**5
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_SIZE_UNITS.update({"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4})


def as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ConfigError(f"configuration key {key} must be true or false, not {value!r}")


def shown(value: Any) -> str:
    """``repr(value)``, cut at 40 characters: a huge number from a file is named, not printed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def as_number(key: str, value: Any, *, minimum: float = 0.0, maximum: float = 3600.0) -> float:
    """A finite number of seconds within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"configuration key {key} must be a number, not {shown(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        number = math.nan
    if not minimum <= number <= maximum:
        raise ConfigError(
            f"configuration key {key} must be a number from {minimum:g} to {maximum:g},"
            f" not {shown(value)}"
        )
    return number


def seconds_up_to(maximum: float, minimum: float = 0.0) -> Callable[[str, Any], float]:
    return lambda key, value: as_number(key, value, minimum=minimum, maximum=maximum)


def as_positive_int(key: str, value: Any, *, maximum: int = 1000) -> int:
    number = 0
    if not isinstance(value, bool) and len(str(value)) <= 20:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
    if not 1 <= number <= maximum:
        raise ConfigError(
            f"configuration key {key} must be a whole number from 1 to {maximum},"
            f" not {shown(value)}"
        )
    return number


def as_text(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise ConfigError(f"configuration key {key} must be a non-empty string, not {value!r}")
    return str(value)


def as_file_name(key: str, value: Any) -> str:
    """A name the agent puts in a path (``<log_dir>/<program_name>.log``, the
    ``ongoing-deployment`` folder): one safe component, never ``..`` or a ``/``."""
    text = as_text(key, value)
    reason = unsafe_root_entry_reason(text, ROOT_BOOKKEEPING_NAMES)
    if reason is not None:
        raise ConfigError(f"configuration key {key} {shown(text)} {reason}")
    return text


def as_path(key: str, value: Any) -> Path:
    text = as_text(key, value)
    if not text.startswith("/"):
        raise ConfigError(f"configuration key {key} must be an absolute path, not {value!r}")
    if "\0" in text or len(text) > 4095 or any(len(part) > 255 for part in text.split("/")):
        raise ConfigError(
            f"configuration key {key} must be a path without NUL, of at most 4095 characters"
            f" whose parts are at most 255, not {shown(text)}"
        )
    return Path(text)


def as_signer_trust(key: str, value: Any) -> Union[Path, Literal["system"], None]:
    if value is None or value == "":
        return None
    if str(value).strip() == "system":
        return "system"
    return as_path(key, value)


def as_optional_text(key: str, value: Any) -> Optional[str]:
    return None if value is None or value == "" else as_text(key, value)


def as_url(key: str, value: Any) -> Optional[str]:
    text = as_optional_text(key, value)
    if text is not None and not re.match(r"^https?://[^/\s]+", text):
        raise ConfigError(f"configuration key {key} must be an http(s) URL, not {value!r}")
    return text


def parse_size(key: str, value: Any) -> Optional[int]:
    """Bytes from ``1048576``, ``"512MB"`` or ``"4GB"`` (units are powers of 1024)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"configuration key {key} must be a size such as 4GB, not {value!r}")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(f"configuration key {key} must be a size such as 4GB, not {value!r}")
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if not 1 <= size <= SIZE_MAX:
        raise ConfigError(
            f"configuration key {key} must be from 1 byte to 1024TB, not {shown(value)}"
        )
    return int(size)


def choice(*choices: str) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        text = str(value).strip().lower() if value is not None else ""
        if text not in choices:
            allowed = " or ".join(choices)
            raise ConfigError(f"configuration key {key} must be {allowed}, not {value!r}")
        return text

    return convert
