"""Notifications: tell people what happened to a model, off the critical path.

`send(cfg, event, payload)` is the one call site for every feature: call it after the
event is recorded; it returns at once and never raises. `message` says it in one line
(and builds the Slack or JSON body), `signing` signs it (HMAC-SHA256 over timestamp and
body), `deliver` posts it with retries and records `notify_failed` in the history.
"""

from retrainer.notify.deliver import Dispatch, Result, drain, redact, send, send_test
from retrainer.notify.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    verify,
)

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER",
           "Dispatch", "Result", "drain", "redact", "send", "send_test", "signature",
           "verify"]
