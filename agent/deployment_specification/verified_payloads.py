"""Remembering the signed specifications already verified, so openssl checks each one once.

Every command of a deployment fetches the same specification from the service, and
verifying it runs an ``openssl`` process (several milliseconds, most of a command's own
cost). The daemon keeps the outcome of each successful verification, keyed on what was
verified: the SHA-256 of the payload's exact bytes, the trust it was checked against (for
a CA bundle, the SHA-256 of the bundle's bytes as read for that check) and the expected
signer name. A payload that differs by one byte, an edited CA bundle or another signer
name finds no entry and is verified anew; a failure is never remembered.

An entry is reused for at most ``max_age_seconds`` and never once its signer certificate
has expired, so a certificate that expires, or a CA removed from the system store, takes
effect within minutes as it would have. The memory is bounded: past ``capacity`` entries
the oldest goes.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, OrderedDict

from agent.deployment_specification.signature import (
    SignedContent,
    SignerTrust,
    read_signer_ca_file,
    verify_pkcs7_payload_against_ca_bytes,
)

DEFAULT_CAPACITY = 32
DEFAULT_MAX_AGE_SECONDS = 600.0


@dataclass(frozen=True)
class _Key:
    payload_sha256: bytes
    trust: str  # "integrity", "system" or "file"
    ca_sha256: bytes  # of the CA bundle's bytes; empty without a bundle
    expected_signer: Optional[str]


@dataclass(frozen=True)
class _Entry:
    content: SignedContent
    verified_at: float


class VerifiedPayloads:
    """The outcomes of the ``PKCS7/JSON`` payloads verified lately (see the module's text).

    ``clock`` (monotonic seconds) and ``utc_now`` (``YYYY-MM-DDTHH:MM:SSZ``) are seams for
    tests.
    """

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], str] = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    ) -> None:
        self._capacity = max(1, capacity)
        self._max_age = max_age_seconds
        self._clock = clock
        self._utc_now = utc_now
        self._entries: OrderedDict[_Key, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self,
        payload_pem: str,
        trust: SignerTrust,
        expected_signer: Optional[str],
        environment: Optional[Mapping[str, str]] = None,
    ) -> SignedContent:
        """What :func:`~agent.deployment_specification.signature.verify_pkcs7_payload_with_openssl`
        returns for these arguments; runs openssl (and reads the CA file) only for a payload
        not verified lately against the same trust."""
        ca_pem = read_signer_ca_file(trust) if isinstance(trust, Path) else None
        key = _Key(
            hashlib.sha256(payload_pem.encode("utf-8")).digest(),
            "file" if ca_pem is not None else ("integrity" if trust is None else str(trust)),
            hashlib.sha256(ca_pem).digest() if ca_pem is not None else b"",
            expected_signer,
        )
        remembered = self._recall(key)
        if remembered is not None:
            return remembered
        content = verify_pkcs7_payload_against_ca_bytes(
            payload_pem, trust, ca_pem, expected_signer, environment
        )
        with self._lock:
            self._entries[key] = _Entry(content, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return content

    def _recall(self, key: _Key) -> Optional[SignedContent]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            fresh = self._clock() - entry.verified_at < self._max_age
            # The summary's times are fixed-width UTC ISO 8601: text order is time order.
            valid = self._utc_now() < entry.content.signer.not_after
            if not (fresh and valid):
                del self._entries[key]
                return None
            return entry.content

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
