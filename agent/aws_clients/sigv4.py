"""AWS Signature Version 4 for the command service's JSON 1.1 requests, signed here.

The command service's calls are small POSTs to ``/`` with a JSON body; each command of a
deployment makes three or four of them while the host waits. botocore signs them through
its general request pipeline (a header object built on ``email.message``, events, the
canonical request of any URL), which costs more than the rest of the call; this module
signs exactly that one shape of request with the standard library, by the same rules
(docs/behaviour.md section 5): a canonical request of the method, the path ``/``, no
query, the signed headers (lower-case names, sorted, values with their runs of spaces
collapsed) and the SHA-256 of the body, then the string to sign over the credential scope
``<date>/<region>/<service>/aws4_request``, signed with the key derived from the secret.
The tests check each signature against botocore's own signer and the server's verifier.

No disk, no network. A :class:`RequestSigner` keeps the one signing key derived for the
current day and secret (an object, not module state): deriving it takes four HMACs.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"


@dataclass(frozen=True)
class SigningCredentials:
    """One set of credentials as they are at the moment of signing."""

    access_key: str
    secret_key: str = field(repr=False)
    token: Optional[str] = field(default=None, repr=False)


def amz_date(moment: float) -> str:
    """``20261202T173000Z``: the signing time as SigV4 writes it (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(moment))


def _collapsed(value: str) -> str:
    return " ".join(value.split())


def canonical_post_request(headers: Mapping[str, str], body: bytes) -> Tuple[str, str]:
    """The canonical request of a POST to ``/`` without a query, signing every header in
    ``headers`` (names in lower case), and the signed-headers list."""
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{_collapsed(headers[name])}\n" for name in names)
    signed = ";".join(names)
    payload_hash = hashlib.sha256(body).hexdigest()
    return f"POST\n/\n\n{canonical_headers}\n{signed}\n{payload_hash}", signed


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class RequestSigner:
    """Signs POSTs for one region and service; thread-safe."""

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._lock = threading.Lock()
        self._key: Optional[Tuple[str, str, bytes]] = None  # (date, secret digest, key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        # Kept by a digest of the secret, never the secret itself, beside the key.
        marker = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        with self._lock:
            kept = self._key
            if kept is not None and kept[0] == date and kept[1] == marker:
                return kept[2]
        key = _hmac(
            _hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), self.region), self.service),
            TERMINATOR,
        )
        with self._lock:
            self._key = (date, marker, key)
        return key

    def signed_headers(
        self,
        credentials: SigningCredentials,
        headers: Mapping[str, str],
        body: bytes,
        moment: float,
    ) -> Dict[str, str]:
        """``headers`` (lower-case names, ``host`` among them) with ``x-amz-date``, the
        session token when there is one, and ``authorization`` added: every header given
        is signed."""
        stamp = amz_date(moment)
        signed: Dict[str, str] = dict(headers)
        signed["x-amz-date"] = stamp
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        canonical, names = canonical_post_request(signed, body)
        date = stamp[:8]
        scope = f"{date}/{self.region}/{self.service}/{TERMINATOR}"
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        string_to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"
        signature = hmac.new(
            self._signing_key(credentials.secret_key, date),
            string_to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        signed["authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope},"
            f" SignedHeaders={names}, Signature={signature}"
        )
        return signed
