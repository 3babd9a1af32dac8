"""The command service's calls on one kept-alive connection, for when all goes well.

Each command of a deployment makes three or four calls to the command service while its
host waits (the specification, the acknowledgement, the completion, and the poll that
brought it). Through botocore's client each call cost about 1.3 ms of the agent's CPU,
nearly all of it botocore's general machinery (events, a header object built on
``email.message``, parameter validation, the response parser) rather than the network:
a third of a command's overhead. A :class:`DirectCalls` makes the same request (the JSON
1.1 POST of the shipped model's operation, SigV4-signed by :mod:`agent.aws_clients.sigv4`
with the client's own credentials, the agent-version header) with the standard library on
a connection it keeps, and reads the answer itself: about a quarter of that CPU.

It is a fast path in front of botocore, never a second client with rules of its own. It
reads itself only an HTTP 200 whose JSON fits the operation's output shape in the model;
any other answer goes to botocore's own parser, so an error answer raises the same
``ClientError``, and a failure of the network raises the botocore exception for it
(connect, read timeout, closed connection, TLS). The caller then treats them as botocore's
(:mod:`agent.aws_clients.command_service` gives a failure botocore would retry its
remaining attempts through botocore), so the attempts and the messages stay botocore's.
Credentials that cannot be read, a call made while another is in flight, or an operation
the model does not have return None: botocore makes that call. It stays off (botocore
makes every call) where its request would differ from botocore's: a proxy (``proxy_uri``
or the environment's), a client certificate, a wire log, an endpoint with a path, a TLS
trust it cannot read from the botocore client. For HTTPS it trusts exactly what that
client trusts (``AWS_CA_BUNDLE``, the ``ca_bundle`` setting, ``REQUESTS_CA_BUNDLE`` or
botocore's bundle, as botocore resolved them).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import structlog

from agent.aws_clients.sigv4 import RequestSigner, SigningCredentials

log = structlog.get_logger(__name__)

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class DirectEndpoint:
    """Where and how the calls go: read once from the botocore client's configuration."""

    url: str
    scheme: str
    host: str
    port: int
    host_header: str
    target_prefix: str
    region: str
    signing_name: str
    connect_timeout: float
    read_timeout: float
    user_agent: str
    extra_headers: Mapping[str, str]
    ca_file: Optional[str] = None


def endpoint_parts(url: str) -> Optional[Dict[str, Any]]:
    """Scheme, host, port and ``Host`` header of an endpoint URL the fast path can take
    (http or https, no user info, no path, query or fragment); None for any other."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    default = 443 if parts.scheme == "https" else 80
    # As botocore signs it: the default port is left out.
    host_header = parts.netloc.rsplit(":", 1)[0] if port == default else parts.netloc
    return {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": port or default,
        "host_header": host_header,
    }


def fits_shape(value: Any, shape: Any) -> bool:
    """Whether a JSON value has the types the model's ``shape`` (botocore) says, members
    the model does not name being ignored as botocore's parser ignores them."""
    if shape is None:  # an operation without an output: any object
        return isinstance(value, dict)
    kind = shape.type_name
    if kind == "structure":
        return isinstance(value, dict) and all(
            member not in value or value[member] is None or fits_shape(value[member], inner)
            for member, inner in shape.members.items()
        )
    if kind == "list":
        return isinstance(value, list) and all(fits_shape(item, shape.member) for item in value)
    if kind == "map":
        return isinstance(value, dict) and all(
            isinstance(key, str) and fits_shape(item, shape.value) for key, item in value.items()
        )
    if kind in ("string", "blob"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double", "timestamp"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


class DirectCalls:
    """The fast path of one command service client (see the module's docstring)."""

    def __init__(
        self,
        endpoint: DirectEndpoint,
        credentials: Callable[[], Optional[SigningCredentials]],
        output_shapes: Mapping[str, Any],
    ) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._output_shapes = dict(output_shapes)
        self._signer = RequestSigner(endpoint.region, endpoint.signing_name)
        self._busy = threading.Lock()
        self._connection: Optional[http.client.HTTPConnection] = None
        self._tls: Optional[ssl.SSLContext] = None
        self._connecting = False  # a failure now is one to connect

    def call(self, operation: str, document: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The service's answer to ``operation`` (network), or None when botocore must make
        the call; a failure raises what botocore raises for it (a ``ClientError`` for an
        error answer, its connection and timeout errors for the network's)."""
        if operation not in self._output_shapes or not self._busy.acquire(blocking=False):
            return None
        shape = self._output_shapes[operation]  # None: an operation without an output
        try:
            return self._call(operation, document, shape)
        finally:
            self._busy.release()

    def _call(
        self, operation: str, document: Mapping[str, Any], shape: Any
    ) -> Optional[Dict[str, Any]]:
        try:
            credentials = self._credentials()
        except Exception as error:  # botocore makes the call, and says what went wrong
            log.debug("direct call skipped: credentials", error=type(error).__name__)
            return None
        if credentials is None:
            return None
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        headers = self._signed_headers(operation, credentials, body)
        try:
            status, answer_headers, answer = self._exchange(body, headers)
        except (OSError, http.client.HTTPException) as error:
            failure = self._as_botocore_error(error)
            self._drop_connection()
            raise failure from None
        if status == 200:
            try:
                parsed = json.loads(answer or b"{}")
            except ValueError:
                parsed = None
            if fits_shape(parsed, shape):
                return dict(parsed)
        return self._parsed_by_botocore(operation, shape, status, answer_headers, answer)

    def _parsed_by_botocore(
        self, operation: str, shape: Any, status: int, headers: Dict[str, str], body: bytes
    ) -> Dict[str, Any]:
        """An error answer, or one of a shape this module does not take, read as botocore
        reads it: the same fields, the same :class:`ClientError` for an error."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]
        from botocore.parsers import create_parser  # type: ignore[import-untyped]

        response = {"status_code": status, "headers": headers, "body": body}
        parsed: Dict[str, Any] = create_parser("json").parse(response, shape)
        if status >= 300:
            raise ClientError(parsed, operation)
        return parsed

    def _as_botocore_error(self, error: Exception) -> Exception:
        """The exception botocore raises for the same failure of the network, so that the
        caller's retries and messages treat it as they treat botocore's."""
        from botocore import exceptions  # type: ignore[import-untyped]

        url = self.endpoint.url
        failure: Exception
        if isinstance(error, ssl.SSLError):
            failure = exceptions.SSLError(endpoint_url=url, error=error)
        elif isinstance(error, socket.timeout):
            kind = (
                exceptions.ConnectTimeoutError if self._connecting else exceptions.ReadTimeoutError
            )
            failure = kind(endpoint_url=url)
        elif self._connecting:
            failure = exceptions.EndpointConnectionError(endpoint_url=url)
        elif isinstance(error, (ConnectionError, http.client.HTTPException)):
            # Reset, refused mid-way, or closed before a whole answer came.
            failure = exceptions.ConnectionClosedError(endpoint_url=url)
        else:
            failure = exceptions.HTTPClientError(error=error)
        return failure

    def _signed_headers(
        self, operation: str, credentials: SigningCredentials, body: bytes
    ) -> Dict[str, str]:
        endpoint = self.endpoint
        unsigned = {
            "content-type": JSON_CONTENT_TYPE,
            "host": endpoint.host_header,
            "x-amz-target": f"{endpoint.target_prefix}.{operation}",
            **{name.lower(): value for name, value in endpoint.extra_headers.items()},
        }
        signed = self._signer.signed_headers(credentials, unsigned, body, time.time())
        signed["user-agent"] = endpoint.user_agent
        signed["content-length"] = str(len(body))
        return signed

    def _exchange(
        self, body: bytes, headers: Mapping[str, str]
    ) -> Tuple[int, Dict[str, str], bytes]:
        connection = self._open_connection()
        connection.request("POST", "/", body=body, headers=dict(headers))
        response = connection.getresponse()
        answer = response.read()
        if response.will_close:
            self._drop_connection()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer_headers, answer

    def _open_connection(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and _closed_by_peer(connection):
            self._drop_connection()
            connection = None
        if connection is None:
            self._connecting = True
            connection = self._new_connection()
            self._connecting = False
            self._connection = connection
        return connection

    def _new_connection(self) -> http.client.HTTPConnection:
        endpoint = self.endpoint
        connection: http.client.HTTPConnection
        if endpoint.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=endpoint.ca_file)
            connection = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=endpoint.connect_timeout, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(
                endpoint.host, endpoint.port, timeout=endpoint.connect_timeout
            )
        connection.connect()
        assert connection.sock is not None
        # Headers and body leave in one write already; no delay for what follows either.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock.settimeout(endpoint.read_timeout)
        return connection

    def _drop_connection(self) -> None:
        self._connecting = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept connection was closed (or broken) by the other end while idle: it
    then reads as ready, with nothing or an error to read. (``poll``, not ``select``: a
    daemon may hold descriptors numbered past what ``select`` takes.)"""
    sock = connection.sock
    if sock is None:
        return True
    try:
        watch = select.poll()
        watch.register(sock, select.POLLIN | select.POLLPRI)
        return bool(watch.poll(0))
    except (OSError, ValueError):
        return True


def direct_calls_for_client(
    client: Any,
    credentials: Callable[[], Optional[SigningCredentials]],
    *,
    user_agent: str,
    extra_headers: Mapping[str, str],
    connect_timeout: float,
    read_timeout: float,
) -> Optional[DirectCalls]:
    """The fast path of a botocore JSON client, or None where it must stay off (see the
    module's docstring). The TLS trust and the proxy decision are read from the client's
    HTTP session, where botocore keeps what it resolved; a botocore without them turns the
    fast path off rather than guess."""
    endpoint_url = str(client.meta.endpoint_url)
    parts = endpoint_parts(endpoint_url)
    http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    verify = getattr(http_session, "_verify", None)
    proxy_config = getattr(http_session, "_proxy_config", None)
    if parts is None or verify is None or proxy_config is None:
        return None
    if getattr(http_session, "_cert_file", None):
        return None
    try:
        if proxy_config.proxy_url_for(endpoint_url):
            return None
    except Exception:  # an unreadable proxy setting: botocore decides
        return None
    ca_file: Optional[str] = None
    if parts["scheme"] == "https":
        if verify is True:
            from botocore.httpsession import get_cert_path  # type: ignore[import-untyped]

            ca_file = str(get_cert_path(True))
        elif isinstance(verify, str):
            ca_file = verify
        else:
            return None
    model = client.meta.service_model
    endpoint = DirectEndpoint(
        url=endpoint_url,
        scheme=parts["scheme"],
        host=parts["host"],
        port=parts["port"],
        host_header=parts["host_header"],
        target_prefix=str(model.metadata["targetPrefix"]),
        region=str(client.meta.region_name),
        signing_name=str(model.signing_name),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent=user_agent,
        extra_headers=dict(extra_headers),
        ca_file=ca_file,
    )
    shapes = {name: model.operation_model(name).output_shape for name in model.operation_names}
    return DirectCalls(endpoint, credentials, shapes)
