"""The console entry point: exit 2 with one line for the user's mistakes, 1 for the unexpected."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from retrainer.cli.app import app, setup_logging
from retrainer.errors import GateRejected, UserError
from retrainer.redact import RedactingStream, redact_any

# Importing a command module registers its commands on the app; --help lists them in
# this order.
COMMAND_MODULES = ("init_demo", "run_promote", "status_history", "governance", "rollout",
                   "report", "drift_watch", "serve_predict")
for _module in COMMAND_MODULES:
    importlib.import_module(f"retrainer.cli.{_module}")


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's ClickException, wherever this typer keeps click (recent typers vendor it)."""
    types: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        types.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def main() -> None:
    """Console entry: exit 2 with one line for the user's mistakes, 1 for the unexpected."""
    # Whatever reaches the terminal (library prints, warnings, tracebacks) loses the URL
    # credentials ${ENV} expansion put in the config.
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    setup_logging(verbose=os.environ.get("RETRAINER_VERBOSE") == "1")
    try:
        code = app(standalone_mode=False)
    except UserError as err:
        print(f"error: {redact_any(err)}", file=sys.stderr)
        sys.exit(err.exit_code)
    except GateRejected as err:
        print(f"rejected: {redact_any(err)}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001
        usage = _usage_error_types()
        if isinstance(err, usage):  # bad arguments: click's own message, exit 2
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, typer.Exit):
            sys.exit(err.exit_code)
        if isinstance(err, typer.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(1)
        import traceback

        # Library errors quote URLs as they got them, credentials included.
        print(redact_any(traceback.format_exc()), end="", file=sys.stderr)
        print(f"unexpected error: {type(err).__name__}: {redact_any(err)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
