"""What every CodeDeploy API handler receives besides the database connection and the
request, and the small rules they share: ids, list pages, tags.

A handler is a plain function ``(connection, context, request) -> response`` run in a
worker thread inside one transaction (:mod:`server.codedeploy_api.operations`); it raises
:class:`~server.errors.ApiError` for a refusal, and the transaction is rolled back.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from botocore.model import OperationModel  # type: ignore[import-untyped]
from sqlalchemy.engine import Connection

from server.configuration import ServerConfig
from server.errors import ApiError

PAGE_SIZE = 100
BATCH_LIMIT = 100
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256


@dataclass(frozen=True)
class ApiContext:
    """``woken`` collects the hosts that got a new command in the operation's transaction:
    their long polls are woken once it has committed."""

    config: ServerConfig
    operation: OperationModel
    caller_arn: str
    now: float
    woken: Set[str] = field(default_factory=set)


Handler = Callable[[Connection, ApiContext, Dict[str, Any]], Dict[str, Any]]


def new_id() -> str:
    return str(uuid.uuid4())


def encode_page_token(position: Dict[str, Any]) -> str:
    """An opaque ``nextToken`` for where the next page starts."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_page_token(token: Optional[str], field: str) -> Optional[Any]:
    """The position a ``nextToken`` holds, or None for the first page."""
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if isinstance(position, dict) and field in position:
            return position[field]
    except (binascii.Error, ValueError, UnicodeError):
        pass
    raise ApiError("InvalidNextTokenException", "The next token is not valid.")


def page_of_names(names: Sequence[str], token: Optional[str]) -> Tuple[List[str], Optional[str]]:
    """One page of sorted ``names`` after the token's position, and the next token."""
    after = decode_page_token(token, "after")
    remaining = [name for name in names if after is None or name > str(after)]
    page = remaining[:PAGE_SIZE]
    more = len(remaining) > PAGE_SIZE
    return page, encode_page_token({"after": page[-1]}) if more else None


def check_batch_size(
    items: Sequence[Any],
    what: str,
    limit: int = BATCH_LIMIT,
    error: str = "BatchLimitExceededException",
) -> None:
    if len(items) > limit:
        raise ApiError(
            error, f"The maximum number of {what} that can be requested at once is {limit}."
        )


def checked_tags(tags: Sequence[Dict[str, Any]], error: str) -> List[Dict[str, str]]:
    """Tags as ``{"Key", "Value"}``; a key is required and both have AWS's lengths."""
    result: List[Dict[str, str]] = []
    for tag in tags:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not key or len(key) > TAG_KEY_MAX or len(value or "") > TAG_VALUE_MAX:
            raise ApiError(
                error,
                f"A tag needs a key of 1 to {TAG_KEY_MAX} characters and a value of at most"
                f" {TAG_VALUE_MAX}.",
            )
        result.append({"Key": key, "Value": value or ""})
    return result


def checked_tag_filters(filters: Sequence[Dict[str, Any]], error: str) -> List[Dict[str, str]]:
    """Tag filters with their type, which says which of key and value must match."""
    result: List[Dict[str, str]] = []
    for tag_filter in filters:
        key, value = tag_filter.get("Key") or "", tag_filter.get("Value") or ""
        kind = tag_filter.get("Type") or ("KEY_AND_VALUE" if key and value else "KEY_ONLY")
        needs_key = kind in ("KEY_ONLY", "KEY_AND_VALUE")
        needs_value = kind in ("VALUE_ONLY", "KEY_AND_VALUE")
        if (needs_key and not key) or (needs_value and not value):
            raise ApiError(error, f"A {kind} tag filter needs its key and value as its type says.")
        result.append({"Key": key, "Value": value, "Type": kind})
    return result
