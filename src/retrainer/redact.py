"""Credentials out of everything retrainer shows or logs.

`${ENV}` expansion puts secrets into URLs (`http://user:${PASS}@host`,
`postgresql://app:${PG_PASSWORD}@db/mlflow`); they must never come back out in status,
history, errors, warnings, logs or decision records. `redact` is the one place that
blanks them: a URL's user-info part and secret-looking query parameters, wherever they
appear in a text.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

MASK = "***"

# scheme://user:password@host -> scheme://***@host (user names can be tokens too). Greedy
# up to the authority's last "@": an unencoded "@" in a password is blanked too.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s'\"<>]*@")
# ?password=...&token=... in a URL's query string.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|secret|"
    r"client_secret|sig|signature)=)[^&;#\s'\"<>]+",
    re.IGNORECASE,
)

T = TypeVar("T")


def redact(text: str | None) -> str | None:
    """`text` with every URL's credentials replaced by ***; None stays None."""
    if not isinstance(text, str) or ("://" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('key')}{MASK}", text)


def redact_all(value: T) -> T:
    """Every string inside a JSON-like value (dicts, lists), redacted."""
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(redact_all(v) for v in value)  # type: ignore[return-value]
    return value


def redact_any(value: Any) -> str:
    """`str(value)` redacted: for exceptions and other objects on their way to a message."""
    return redact(str(value)) or ""


class RedactingStream:
    """A text stream that blanks URL credentials in what passes through it.

    The CLI wraps stdout and stderr in it, so library prints (MLflow's "View run at
    http://user:pw@host/..." lines) and tracebacks are covered too. Rich writes each print's
    whole rendering at once, so a URL is not split across writes.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        # Bytes go through untouched, so the wrapped text stream refuses them as it would:
        # click probes streams with write(b"") to find binary ones.
        return self._stream.write(redact(text) if isinstance(text, str) else text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

