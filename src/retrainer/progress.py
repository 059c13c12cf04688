"""Where a long command is: the steps of a cycle, reported to whoever listens.

The modules say `progress.step("scoring ...")`; the CLI decides what that looks like (a
live display on a terminal, plain lines otherwise, nothing under --json). Without a
listener a step costs one context-variable read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

_listener: ContextVar[Callable[[str], None] | None] = ContextVar("retrainer_progress",
                                                                   default=None)


def step(text: str) -> None:
    """A new step begins (the previous one is done)."""
    listener = _listener.get()
    if listener is not None:
        listener(text)


@contextlib.contextmanager
def reporting(listener: Callable[[str], None]) -> Iterator[None]:
    """Send the steps of the code run inside this block to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
