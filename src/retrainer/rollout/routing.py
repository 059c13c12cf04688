"""Which model answers a request: the canary for `canary_share` of them, the champion
for the rest.

By default each request is drawn at random. With `sticky_header` the draw is a stable
hash of that header's value (keyed by the canary's version), so a given user, session or
tenant always gets the same model for the whole canary, on every worker and every
server; a request without the header is drawn at random.
"""

from __future__ import annotations

import hashlib
import random


class Router:
    """The per-request routing rule; built once per server, read on every request."""

    __slots__ = ("share", "header", "_draw", "_cut")

    def __init__(self, share: float, sticky_header: str | None = None) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share must be between 0 and 1, got {share}")
        self.share = share
        self.header = sticky_header.lower().encode("latin-1") if sticky_header else None
        self._draw = random.random
        self._cut = int(share * 2**64)

    def to_canary(self, headers: list[tuple[bytes, bytes]], canary_version: str) -> bool:
        """Whether this request (its ASGI headers) goes to the canary."""
        if self.header is not None:
            for name, value in headers:
                if name == self.header:
                    return sticky_bucket(canary_version, value) < self._cut
        return self._draw() < self.share


def sticky_bucket(canary_version: str, key: bytes) -> int:
    """A 64-bit bucket for `key`, the same in every process and on every machine."""
    digest = hashlib.blake2b(key, digest_size=8, key=canary_version.encode()).digest()
    return int.from_bytes(digest, "big")
