"""Start-up without the cyclic garbage collector.

Starting a command builds a few hundred thousand objects (Typer and click, the Azure SDK's
modules) that live as long as the process. The collector can free none of them,
yet its passes over the growing heap cost about a tenth of `vmctl list`'s start-up CPU. So the
entry point holds the collector off (`hold`) until a command begins its work (`release`, called by
`cli._common.handle_errors` and by `sim serve`); then everything built so far is frozen (never
scanned again) and the collector runs as usual for the rest of the process, however long it lives.
`quiet` does the same around one later import (the Azure SDK, imported when a command needs it).
Nothing here changes what a command does; in-process callers (tests) are left alone.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

_entry = False  # this process was started by vmctl's entry point
_held = False


def hold() -> None:
    """Turn the collector off for start-up (the entry point, before the CLI is imported)."""
    global _entry, _held
    _entry = True
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """A command starts its work: freeze what start-up built and turn the collector back on.
    Does nothing unless `hold` turned it off."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


@contextmanager
def quiet() -> Iterator[None]:
    """The collector off while a large module is imported, then what it built frozen (only in a
    process started by the entry point)."""
    if not _entry or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
