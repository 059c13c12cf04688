"""Run `retrainer ARGS` as a user would, in a process of its own, without paying imports each time.

A `python -m retrainer` subprocess spends ~3 s importing MLflow, scikit-learn and pandas
before it does anything; the suite runs the CLI a few hundred times. So each pytest
process keeps one fork server (multiprocessing's `forkserver`) that has imported them
once, and every CLI call is a fresh fork of it: its own process, working directory,
environment, file descriptors 1 and 2 and exit code, nothing shared with the test or
with other calls. `python -m retrainer` itself still runs: `runpy` executes the package's
`__main__`. Tests that are about the process itself (what importing costs, signals, the
console script) start a real interpreter with `fresh=True`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: What every command imports anyway; the fork server imports it once.
PRELOAD = ["retrainer.cli.main", "mlflow", "mlflow.tracking",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
           "mlflow.sklearn", "mlflow.pyfunc", "sklearn.linear_model", "sklearn.ensemble",
           "sklearn.inspection", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats",
           "retrainer.cycle", "retrainer.registry", "retrainer.drift.champion",
           "retrainer.triggers.daemon",
           # Every judgement imports shap (~3 s) when the explain extra is installed; a
           # module that is not installed is skipped by the fork server.
           "shap", "skops.io", "forkserver_warmup"]

_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def _child(args: list[str], cwd: str, env: dict[str, str], out: str, err: str,
           script: str | None = None, new_session: bool = False) -> None:
    """In the fork: become `python -m retrainer ARGS` (or `python SCRIPT ARGS`) in `cwd`
    with `env`, then exit. `new_session`: lead a process group of its own (as
    `Popen(start_new_session=True)`), so a server and the workers it starts can be stopped
    together with `os.killpg` without touching the fork server."""
    if new_session:
        os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR as the environment says
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    # multiprocessing left sys.stdin on another descriptor; a fresh interpreter's is fd 0
    # (uvicorn hands that number to the workers it spawns).
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 0 stays open
    sys.argv = [script or "retrainer", *args]
    code: object = 0
    try:
        import runpy

        if script is None:
            runpy.run_module("retrainer", run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - an uncaught error, printed as Python would
        import traceback

        traceback.print_exc()
        code = 1
    # Shut down as the interpreter would: atexit handlers (notifications drain there) and
    # non-daemon threads, which a multiprocessing child otherwise skips.
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream has nothing left to say
            stream.flush()
    os._exit(code)


class ForkedCli:
    """A running `retrainer ARGS` fork, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, args: list[str], cwd: Path | str, env: dict[str, str],
                 out: Path | None = None, err: Path | None = None,
                 script: str | None = None, new_session: bool = False) -> None:
        self.args = args
        self._folder = tempfile.TemporaryDirectory(prefix="cli-")
        self._out = str(out or os.path.join(self._folder.name, "stdout"))
        self._err = str(err or os.path.join(self._folder.name, "stderr"))
        for path in (self._out, self._err):
            Path(path).touch()  # there even when the fork dies before it opens them
        self._proc = _forkserver().Process(
            target=_child,
            args=(list(args), str(cwd), env, self._out, self._err, script, new_session))
        self._proc.start()
        self.pid: int = self._proc.pid  # type: ignore[assignment]

    @property
    def returncode(self) -> int | None:
        """Negative when a signal killed it, as subprocess says."""
        return self._proc.exitcode

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(["retrainer", *self.args], timeout or 0)
        return self._proc.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._proc.terminate()

    def kill(self) -> None:
        self._proc.kill()

    def output(self) -> tuple[str, str]:
        """stdout and stderr so far."""
        with open(self._out, encoding="utf-8", errors="replace") as out, \
                open(self._err, encoding="utf-8", errors="replace") as err:
            return out.read(), err.read()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end (killing it after `timeout`), then stdout and stderr."""
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.join()
            raise
        try:
            return self.output()
        finally:
            self._folder.cleanup()


def start(args: list[str], cwd: Path | str, env: dict[str, str], out: Path | None = None,
          err: Path | None = None, script: str | None = None,
          new_session: bool = False) -> ForkedCli:
    """Start `retrainer ARGS` (or `python SCRIPT ARGS`) without waiting; its output goes to
    `out` and `err` when given (read them while it runs), else to files `communicate` reads
    at the end."""
    return ForkedCli(args, cwd, env, out, err, script, new_session)


def run(args: list[str], cwd: Path | str, env: dict[str, str], timeout: float,
        fresh: bool = False) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `retrainer ARGS`."""
    if fresh:
        proc = subprocess.run([sys.executable, "-m", "retrainer", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, env=env)
        return proc.returncode, proc.stdout, proc.stderr
    forked = start(args, cwd, env)
    out, err = forked.communicate(timeout)
    return forked.wait(), out, err


def run_script(script: Path | str, args: list[str], cwd: Path | str, timeout: float = 300
               ) -> tuple[int, str, str]:
    """`python SCRIPT ARGS` (a user's own script) in a fork of the preloaded server."""
    forked = ForkedCli(list(args), cwd, dict(os.environ), script=str(script))
    out, err = forked.communicate(timeout)
    return forked.wait(), out, err
