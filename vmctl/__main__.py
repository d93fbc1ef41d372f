"""The `vmctl` entry point. `vmctl [COMMAND ...] --help` is answered from vmctl/_helpcache.py
(generated from Typer's own output and checked by the tests) without importing Typer and click:
they are most of vmctl's start-up, and help is the command people run most. Anything
else, and any case the cache does not cover (a narrow terminal, another program name), goes to
the Typer app."""

from __future__ import annotations

import os
import sys


def _program_name() -> str:
    """The name click puts in `Usage:` (click.utils._detect_program_name, same rules)."""
    main = sys.modules.get("__main__")
    path = sys.argv[0]
    package = getattr(main, "__package__", None)
    if package in (None, ""):
        return os.path.basename(path)
    name = os.path.splitext(os.path.basename(path))[0]
    module = str(package) if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def _columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        if columns <= 0:
            columns = 80
    return columns


def cached_help(argv: list[str]) -> str | None:
    """The help text for `argv` (a command path followed by exactly `--help`), or None."""
    if not argv or argv[-1] != "--help" or any(a.startswith("-") for a in argv[:-1]) or _columns() < 80:
        return None
    from ._helpcache import HELP

    return HELP.get(_program_name(), {}).get(" ".join(argv[:-1]))


def main() -> None:
    text = cached_help(sys.argv[1:])
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from ._startup import hold

    hold()  # the collector waits until the command starts its work (vmctl/_startup.py)
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
