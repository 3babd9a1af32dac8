"""Checking AWS Signature Version 4 on a request, as AWS's services check it.

The client (the AWS CLI, the agent's botocore client) signs a canonical form of the
request with a key derived from its secret, the date, the region and the service. We
rebuild the same canonical request from what arrived (method, path, query, the headers
it says it signed, the SHA-256 of the body), derive the key from our copy of the secret,
and compare in constant time. Also checked, with AWS's error names: the algorithm, the
credential scope (date, region, service, terminator), the ``host`` header being signed,
the signing time within the clock-skew window, and a declared payload hash matching the
body. Nothing here touches the disk, the network or the database: the caller finds the
secret of the key the ``Authorization`` header names.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import posixpath
import re
import threading
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, quote

from server.errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_FORM = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
# Derived signing keys remembered at most: one a key a day, for a fleet and its operators.
MAX_SIGNING_KEYS = 10_000
_PART = re.compile(r"\s*([A-Za-z]+)=([^,]*)\s*(?:,|$)")

INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. Check"
    " your AWS Secret Access Key and signing method. Consult the service documentation for"
    " details."
)


@dataclass(frozen=True)
class ReceivedRequest:
    """What arrived: headers by lower-case name (repeated headers joined with commas)."""

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class SignatureClaim:
    """What the ``Authorization`` header claims."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: Tuple[str, ...]
    signature: str = field(repr=False)

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def parse_authorization(header: str) -> SignatureClaim:
    """Read an ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` header."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ApiError(INCOMPLETE_SIGNATURE, f"Unsupported AWS 'algorithm': '{algorithm[:40]}'")
    parts = {name: value.strip() for name, value in _PART.findall(rest)}
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(name):
            raise ApiError(
                INCOMPLETE_SIGNATURE, f"Authorization header requires '{name}' parameter."
            )
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise ApiError(
            INCOMPLETE_SIGNATURE,
            "Credential must have exactly 5 slash-delimited elements,"
            " e.g. keyid/date/region/service/term",
        )
    signed = tuple(parts["SignedHeaders"].split(";"))
    key_id, date, region, service, terminator = credential
    return SignatureClaim(
        key_id, date, region, service, terminator, signed, signature=parts["Signature"]
    )


def _canonical_query(query_string: str) -> str:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_path(raw_path: str) -> str:
    # As botocore does for every service but S3: dot segments removed, then the path
    # (already percent-encoded on the wire) encoded once more.
    normalized = posixpath.normpath(raw_path or "/") if raw_path not in ("", "/") else "/"
    if raw_path.endswith("/") and normalized != "/":
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_request(request: ReceivedRequest, claim: SignatureClaim, payload_hash: str) -> str:
    headers = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n"
        for name in claim.signed_headers
    )
    return "\n".join(
        (
            request.method,
            _canonical_path(request.raw_path),
            _canonical_query(request.query_string),
            headers,
            ";".join(claim.signed_headers),
            payload_hash,
        )
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, claim: SignatureClaim) -> bytes:
    """The key derived from ``secret`` for the claim's date, region and service."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), claim.date)
    for part in (claim.region, claim.service, claim.terminator):
        key = _hmac(key, part)
    return key


class SigningKeys:
    """Derived signing keys by (secret, date, region, service): a key signs a day's requests.

    Thread-safe: the server's worker threads share one. Bounded; starts over when full.
    """

    def __init__(self) -> None:
        self._keys: Dict[Tuple[str, str, str, str, str], bytes] = {}
        self._lock = threading.Lock()

    def get(self, secret: str, claim: SignatureClaim) -> bytes:
        """The derived key, computed once per secret and scope."""
        scope = (secret, claim.date, claim.region, claim.service, claim.terminator)
        with self._lock:
            key = self._keys.get(scope)
        if key is None:
            key = signing_key(secret, claim)
            with self._lock:
                if len(self._keys) >= MAX_SIGNING_KEYS:
                    self._keys.clear()
                self._keys[scope] = key
        return key


def expected_signature(
    secret: str,
    claim: SignatureClaim,
    amz_date: str,
    canonical: str,
    signing_keys: Optional[SigningKeys] = None,
) -> str:
    """The signature a client holding ``secret`` would have sent."""
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, claim.scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
    )
    key = signing_key(secret, claim) if signing_keys is None else signing_keys.get(secret, claim)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _parse_amz_date(amz_date: str) -> datetime.datetime:
    """``YYYYMMDDTHHMMSSZ`` as a UTC time (ValueError otherwise); cheaper than strptime."""
    match = _AMZ_DATE_FORM.fullmatch(amz_date)
    if match is None:
        raise ValueError(amz_date)
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)


def check_claim_scope(claim: SignatureClaim, region: str, service: str) -> None:
    """The scope must be for this server's region and the API's service."""
    if claim.terminator != TERMINATOR:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not"
            f" '{claim.terminator[:40]}'.",
        )
    if claim.region != region:
        raise ApiError(INVALID_SIGNATURE, "Credential should be scoped to a valid region.")
    if claim.service != service:
        raise ApiError(
            INVALID_SIGNATURE, f"Credential should be scoped to correct service: '{service}'."
        )
    if "host" not in claim.signed_headers:
        raise ApiError(
            INVALID_SIGNATURE,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )


def check_signing_time(
    request: ReceivedRequest, claim: SignatureClaim, now: float, skew_seconds: float
) -> str:
    """The request's ``X-Amz-Date``, checked against the scope's date and our clock."""
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = _parse_amz_date(amz_date)
    except ValueError:
        raise ApiError(
            INCOMPLETE_SIGNATURE,
            "Authorization header requires existence of a valid 'X-Amz-Date' header.",
        ) from None
    if amz_date[:8] != claim.date:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"
            f" from HTTP: '{claim.date[:16]}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    current = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    window = datetime.timedelta(seconds=skew_seconds)
    minutes = f"{skew_seconds / 60:g} min."
    if signed_at < current - window:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Signature expired: {amz_date} is now earlier than"
            f" {(current - window).strftime(_AMZ_DATE)} ({current.strftime(_AMZ_DATE)} - {minutes})",
        )
    if signed_at > current + window:
        raise ApiError(
            INVALID_SIGNATURE,
            f"Signature not yet current: {amz_date} is still later than"
            f" {(current + window).strftime(_AMZ_DATE)} ({current.strftime(_AMZ_DATE)} + {minutes})",
        )
    return amz_date


def verify_signature(
    request: ReceivedRequest,
    claim: SignatureClaim,
    secret: str,
    now: float,
    skew_seconds: float,
    signing_keys: Optional[SigningKeys] = None,
) -> None:
    """Raise :class:`ApiError` unless the request is signed with ``secret`` within the window.

    ``signing_keys`` remembers the keys derived from secrets (derived anew without it).
    """
    amz_date = check_signing_time(request, claim, now, skew_seconds)
    missing = [name for name in claim.signed_headers if name not in request.headers]
    if missing:
        raise ApiError(INVALID_SIGNATURE, MISMATCH_MESSAGE)
    payload_hash = hashlib.sha256(request.body).hexdigest()
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != payload_hash:
        raise ApiError(
            INVALID_SIGNATURE,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    canonical = canonical_request(request, claim, payload_hash)
    expected = expected_signature(secret, claim, amz_date, canonical, signing_keys)
    if not hmac.compare_digest(expected, claim.signature):
        raise ApiError(INVALID_SIGNATURE, MISMATCH_MESSAGE)
