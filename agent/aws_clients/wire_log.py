"""The wire log (``log_aws_wire: true``): what the agent's AWS clients send and receive.

Each request's method, URL and headers and each answer's status and headers go to
``<log_dir>/<program_name>.aws_wire.log``, bodies cut short. The records come from
botocore's event hooks on the clients the agent builds (``before-send`` and
``response-received``), not from botocore's DEBUG logger, whose records carry session
tokens. Everything secret is replaced by ``***`` before it is written: Authorization and
security-token headers, credential fields in bodies, presigned-URL signatures, GitHub
tokens; bodies that can hold a secret we cannot pick out (a signed deployment
specification, a streamed object) are not written at all.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

log = structlog.get_logger(__name__)

REDACTED = "***"
WIRE_LOG_SUFFIX = ".aws_wire.log"
DEFAULT_BODY_LIMIT = 1024

# Header names (lower case) whose whole value is secret.
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-amz-security-token",
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
        "cookie",
        "set-cookie",
    }
)
# Query parameters (lower case) of presigned URLs that carry a signature or a credential.
_SECRET_QUERY = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "awsaccesskeyid",
        "access_token",
        "token",
    }
)
# Operations whose answers carry secrets in a form that cannot be redacted field by field
# (the signed specification holds a GitHub token inside base64 PKCS#7).
_OMITTED_RESPONSE_BODIES = frozenset({"GetDeploymentSpecification"})
# JSON or XML fields holding credentials or tokens, also inside JSON nested as a string
# (where the quotes are escaped).
_SECRET_FIELD = re.compile(
    r"(?P<key>(?:\\?\")?(?:SecretAccessKey|SessionToken|AccessKeyId|SecretKey|Token"
    r"|GitHubAccessToken|aws_secret_access_key|aws_session_token|aws_access_key_id)"
    r"(?:\\?\")?\s*[:=]\s*(?:\\?\")?)(?P<value>[^\"\\<>,}&;\s]+)",
    re.IGNORECASE,
)
_XML_SECRET = re.compile(
    r"(<(?P<tag>SecretAccessKey|SessionToken|AccessKeyId|Token)>)[^<]*(</(?P=tag)>)",
    re.IGNORECASE,
)
# GitHub token formats (classic, OAuth, app, refresh, fine-grained) and AWS key ids.
_TOKEN_PATTERNS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16})\b"
)
_BEARER = re.compile(r"\b(token|bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def wire_log_file_for(log_dir: Path, program_name: str) -> Path:
    """``<log_dir>/<program_name>.aws_wire.log``."""
    return log_dir / f"{program_name}{WIRE_LOG_SUFFIX}"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credential fields, tokens and the given secret values replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SECRET_FIELD.sub(lambda m: m.group("key") + REDACTED, text)
    text = _XML_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    text = _TOKEN_PATTERNS.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact_url_secrets(url: str) -> str:
    """The URL without user information and with signature/credential query values hidden."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if k.lower() in _SECRET_QUERY else v) for k, v in pairs], safe="*"
        )
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_headers(headers: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """Header pairs with the secret ones' values replaced."""
    pairs: List[Tuple[str, str]] = []
    for name, value in headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        pairs.append(
            (str(name), REDACTED if name.lower() in _SECRET_HEADERS else redact_text(text))
        )
    return pairs


def _body_text(body: Any, limit: int) -> Optional[str]:
    """A printable, redacted, shortened body; None when it is a stream or absent."""
    if body is None or body == b"" or body == "":
        return None
    if isinstance(body, (bytes, bytearray)):
        text = bytes(body).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        return f"<{type(body).__name__} not logged>"
    # Redact the whole body first, so a secret cut by the limit is not half written.
    text = redact_text(text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True)
class WireLogSettings:
    """Where the wire log goes and how much of each body it keeps."""

    path: Path
    body_limit: int = DEFAULT_BODY_LIMIT


class WireLogWriter:
    """Appends wire records to one file; shared by the hooks of the clients it is attached to.

    Each record is one write of a few lines, so records of parallel requests do not
    interleave within a line.
    """

    def __init__(self, settings: WireLogSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._failed = False

    def write_record_to_disk(self, lines: List[str]) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        text = "".join(f"{stamp} {line}\n" for line in lines)
        with self._lock:
            try:
                self.settings.path.parent.mkdir(parents=True, exist_ok=True)
                with self.settings.path.open("a", encoding="utf-8") as output:
                    output.write(text)
            except OSError as error:
                # The wire log is a debugging aid: losing it must not stop a deployment.
                if not self._failed:
                    self._failed = True
                    log.warning(
                        "cannot write the AWS wire log",
                        path=str(self.settings.path),
                        error=str(error.strerror),
                    )

    # -- botocore event handlers -----------------------------------------------------

    def on_before_send(self, request: Any, event_name: str = "", **_: Any) -> None:
        """``before-send``: the signed request about to go out. Returns None so that
        botocore sends it."""
        service, operation = _names(event_name)
        lines = [
            f"request {service} {operation}: {request.method} {redact_url_secrets(str(request.url))}",
            "  headers: " + _headers_text(request.headers),
        ]
        body = _body_text(request.body, self.settings.body_limit)
        if body is not None:
            lines.append(f"  body: {body}")
        self.write_record_to_disk(lines)

    def on_response_received(
        self,
        response_dict: Optional[Mapping[str, Any]] = None,
        exception: Optional[BaseException] = None,
        event_name: str = "",
        **_: Any,
    ) -> None:
        """``response-received``: one attempt's answer, or the error that stopped it."""
        service, operation = _names(event_name)
        if response_dict is None:
            reason = type(exception).__name__ if exception is not None else "no answer"
            self.write_record_to_disk([f"response {service} {operation}: failed ({reason})"])
            return
        lines = [
            f"response {service} {operation}: status {response_dict.get('status_code')}",
            "  headers: " + _headers_text(response_dict.get("headers") or {}),
        ]
        if operation in _OMITTED_RESPONSE_BODIES:
            lines.append("  body: <omitted: may hold secrets>")
        else:
            body = _body_text(response_dict.get("body"), self.settings.body_limit)
            if body is not None:
                lines.append(f"  body: {body}")
        self.write_record_to_disk(lines)


def _names(event_name: str) -> Tuple[str, str]:
    parts = event_name.split(".")
    service = parts[1] if len(parts) > 1 else "?"
    operation = parts[2] if len(parts) > 2 else "?"
    return service, operation


def _headers_text(headers: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}: {value}" for name, value in redact_headers(headers))


def attach_wire_log(client: Any, writer: WireLogWriter) -> None:
    """Make ``client`` (a botocore client) write its traffic to ``writer``'s file."""
    events = client.meta.events
    events.register("before-send", writer.on_before_send, unique_id=f"wire-log-send-{id(writer)}")
    events.register(
        "response-received",
        writer.on_response_received,
        unique_id=f"wire-log-received-{id(writer)}",
    )
