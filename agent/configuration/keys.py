"""How a configuration key is declared: once, with its type, default, converter and doc.

Each key of ``codedeployagent.yml`` and of ``codedeploy.onpremises.yml`` is a field of its
frozen model, declared with :func:`setting`: the field's annotation is the key's type, and
the call gives its default, the converter that checks and types a value from the file
(:mod:`agent.configuration.converters`), where the key comes from and one line of
documentation. :func:`declared_keys` reads them back as :class:`ConfigKey` records, and
everything else follows from those: the loaders, the warnings about unknown keys, the
tables of the README and of docs/behaviour.md (:mod:`agent.config_reference`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Type, TypeVar

from agent.configuration.converters import Converter

T = TypeVar("T")

_KEY = "configuration_key"


class KeyOrigin(str, enum.Enum):
    """Whose key it is: the docs group keys by it."""

    AWS = "the AWS agent"
    AWS_V2 = "the hardening keys of the AWS agent v2"
    OWN = "this agent's own"


@dataclass(frozen=True)
class ConfigKey:
    """One key of a configuration file."""

    name: str
    default: Any
    convert: Converter
    # One line (Markdown) for the docs' tables: what the key does.
    doc: str
    origin: KeyOrigin = KeyOrigin.AWS
    # What the docs show as the default when the value itself would not say it.
    shown_default: Optional[str] = None
    # Set when no other value than the default is honoured: why (the loader warns).
    locked_because: Optional[str] = None
    # The key that needs this one (the on-premises file's two kinds of identity).
    needed_with: Optional[str] = None
    # A key the file must name (the model's field has no default).
    required: bool = False

    @property
    def default_text(self) -> str:
        """The default as the docs write it (Markdown)."""
        if self.shown_default is not None:
            return self.shown_default
        if self.needed_with is not None:
            return f"with `{self.needed_with}`"
        return "none" if self.default is None else f"`{yaml_text(self.default)}`"


def yaml_text(value: Any) -> str:
    """A default as it is written in a configuration file (``true``, ``5``, a path)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def setting(
    default: T,
    convert: Callable[[str, Any], Optional[T]],
    doc: str,
    *,
    origin: KeyOrigin = KeyOrigin.AWS,
    shown_default: Optional[str] = None,
    locked_because: Optional[str] = None,
    needed_with: Optional[str] = None,
    secret: bool = False,
) -> T:
    """A dataclass field that is a configuration key (see the module's docstring).

    Typed as the key's value, so that mypy checks the default and the converter against
    the field's annotation. A ``secret`` value stays out of the model's ``repr``.
    """
    key = ConfigKey("", default, convert, doc, origin, shown_default, locked_because, needed_with)
    return dataclasses.field(default=default, repr=not secret, metadata={_KEY: key})


def required_setting(
    convert: Callable[[str, Any], T], doc: str, *, origin: KeyOrigin = KeyOrigin.AWS
) -> T:
    """A dataclass field, without a default, for a key the file must name (mypy takes the
    call for a default; the model's constructor still requires the value)."""
    key = ConfigKey("", None, convert, doc, origin, shown_default="required", required=True)
    field: T = dataclasses.field(metadata={_KEY: key})
    return field


def declared_keys(model: Type[Any]) -> Tuple[ConfigKey, ...]:
    """The keys a model declares with :func:`setting`, in the order of its fields."""
    return tuple(
        dataclasses.replace(field.metadata[_KEY], name=field.name)
        for field in dataclasses.fields(model)
        if _KEY in field.metadata
    )


@dataclass(frozen=True)
class IgnoredKey:
    """A key of the AWS agent that this agent accepts but does not support.

    It is warned about once, naming it, so that no key is a silent no-op; a key whose
    value is ``same_as`` asks for what this agent does anyway and is accepted silently,
    another value is warned about with ``because``.
    """

    name: str
    # One line (Markdown) for the docs: what it does in the AWS agent, and why not here.
    doc: str
    origin: KeyOrigin = KeyOrigin.AWS
    same_as: Optional[str] = None
    because: str = ""
