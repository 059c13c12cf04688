"""The `retrainer` command line: parses, calls the modules, prints. Nothing else.

`app` holds the typer app and shared output helpers; one module per group of commands;
`main` is the console entry point (`retrainer.cli:main`).
"""

from retrainer.cli.main import main

__all__ = ["main"]
