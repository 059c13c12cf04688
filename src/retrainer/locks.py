"""Cross-process locks: a file lock on one machine, a PostgreSQL advisory lock across many.

Neither can go stale: the OS drops a flock when its holder dies, and PostgreSQL drops a
session advisory lock when its connection closes. A note beside a file lock names the
live holder (pid, who, since when); a note left behind names a holder that died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from retrainer.errors import UserError
from retrainer.stamp import actor, now_iso

log = logging.getLogger("retrainer")


def holder_note(path: Path) -> str:
    """' (pid 123, alice, since …)' from the note beside a lock file, or ''."""
    try:
        info = json.loads(path.with_name(path.name + ".holder").read_text())
    except (OSError, ValueError):
        return ""
    return f" (pid {info.get('pid')}, {info.get('actor')}, since {info.get('at')})"


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, busy: str) -> Iterator[None]:
    """Hold `path` (waiting up to `timeout` s); `busy` starts the UserError when it is held."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        waited = f", waited {timeout:.0f} s" if timeout else ""
        raise UserError(f"{busy}: locked by another live process{holder_note(path)} "
                        f"({path}{waited}; the lock is freed when its holder exits)") from None
    # A clean release removes the note: one left behind means its writer died holding the
    # lock. The OS has freed it; say so, since a repair may follow.
    stale = holder_note(path)
    if stale:
        log.warning("the previous holder%s died holding %s; the OS released the lock",
                    stale, path)
    note = path.with_name(path.name + ".holder")
    with contextlib.suppress(OSError):  # the note is informative only
        note.write_text(json.dumps({"pid": os.getpid(), "actor": actor(), "at": now_iso()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            note.unlink()
        lock.release()


@contextlib.contextmanager
def advisory_lock(url: str, key: str, timeout: float, busy: str) -> Iterator[None]:
    """A session-level PostgreSQL advisory lock on `key`, polled for up to `timeout` s."""
    import sqlalchemy

    if url.startswith("postgresql://"):  # psycopg2 is what the package installs
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        conn = engine.connect()
    except Exception as err:  # noqa: BLE001
        raise UserError(f"cannot reach the lock database: {str(err).splitlines()[0]}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                               {"k": key}).scalar()
            conn.commit()
            if got:
                break
            if time.monotonic() >= deadline:
                waited = f", waited {timeout:.0f} s" if timeout else ""
                raise UserError(f"{busy}: another process holds the advisory lock "
                                f"{key!r}{waited}")
            time.sleep(0.2)
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
            conn.commit()
    finally:
        conn.close()
        engine.dispose()
