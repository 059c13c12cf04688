"""Signing a delivery so a receiver can tell it came from retrainer and was not replayed.

When a receiver has `secret_env`, each delivery carries

- ``X-Retrainer-Timestamp``: POSIX seconds when this attempt was sent, and
- ``X-Retrainer-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the secret, of
  ``{timestamp}.{body}`` (the timestamp, a dot, then the raw request body bytes).

Signing the timestamp with the body lets a receiver refuse an old delivery replayed
later: recompute the HMAC, compare in constant time, and check the timestamp is recent.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Retrainer-Signature"
TIMESTAMP_HEADER = "X-Retrainer-Timestamp"
EVENT_HEADER = "X-Retrainer-Event"
DELIVERY_HEADER = "X-Retrainer-Delivery"
SCHEME = "sha256="
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Retrainer-Signature`` value for this timestamp and body."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes,
           tolerance: float = TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """What a receiver does (also used by the tests): signature and freshness."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    sent = lower.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or not sent:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), sent)
