"""Rich tables for terminals; plain text (no colour, no wrapping) when not on a TTY or NO_COLOR."""

from __future__ import annotations

import os
import re
import sys
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import Output, wants_color

# Terminal control characters in data (a tag value holding ESC [2J, an OSC title sequence) would
# be obeyed by the terminal; they are shown as \xNN instead. Newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: object) -> Text:
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text)))


STYLE = {"stopped": "bold yellow", "prod": "bold red", "dim": "dim", "failed": "red", "ok": "green"}


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`vmctl list | head`: the reader left. Rich exits 1 here; vmctl's error handler exits 0."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise BrokenPipeError


def console_for(stream: TextIO) -> Console:
    color = wants_color(stream)
    return _Console(file=stream, no_color=not color, highlight=False, force_terminal=color,
                   width=None if color else 400, soft_wrap=not color, emoji=False)


def table(out: Output, stream: TextIO) -> None:
    con = console_for(stream)
    plain = not wants_color(stream)
    if out.columns:
        t = Table(box=None if plain else None, show_edge=False, pad_edge=False, header_style="bold",
                  show_lines=False, expand=False)
        for c in out.columns:
            t.add_column(c, no_wrap=plain, overflow="fold")
        for i, r in enumerate(out.rows):
            style = out.row_styles[i] if i < len(out.row_styles) else ""
            t.add_row(*[safe(c) for c in r], style=STYLE.get(style, style) or None)
        con.print(t)
    for s in out.sections:
        title = safe(s.title)
        title.stylize("bold")
        con.print(title)
        for line in s.lines:
            con.print(safe("  " + line))
        if s.columns:
            t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
            for c in s.columns:
                t.add_column(c, no_wrap=plain)
            for r in s.rows:
                t.add_row(*[safe(c) for c in r])
            con.print(t)
        con.print()
    for line in out.footer:
        con.print(safe(line))
