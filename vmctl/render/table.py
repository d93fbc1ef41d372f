"""Tables for terminals: laid out to the terminal's width without ever cutting or splitting a value.

On a terminal (or with COLUMNS set) a table that does not fit gives way in this order, each step
only when the previous one was not enough:

1. a column holding the same value in every row is lifted out into one line above the table
   ("Every row: SUBSCRIPTION contoso-dev"); a column empty in every row is left out;
2. a long value repeated in a column becomes a numbered note below the table ("[1]");
3. columns with a declared short form use it (`Col.short`: ids as their first 8 characters and
   `…`, timestamps to the second); the full values are in -o json, -o markdown, -o csv and -o tsv;
4. columns are left out in their declared order (`Col.drop`, lowest first), and a line says which;
5. if the table still does not fit: one block per row, `LABEL  value` lines under the row's key.

Text wraps only between words, and a date with its time counts as one word: a name, an id or a
timestamp is never split. Without a terminal the table is printed at its natural width, one line
per row, no colour.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Literal, Mapping, TextIO

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from . import Col, Output, wants_color

# Terminal control characters in data (a tag value holding ESC [2J, an OSC title sequence) would
# be obeyed by the terminal; they are shown as \xNN instead. Newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: object) -> Text:
    return Text(clean(text))


def clean(text: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


STYLE = {"stopped": "bold yellow", "prod": "bold red", "dim": "dim", "failed": "red", "ok": "green"}

GAP = 2            # spaces between columns
WRAP_FLOORS = (20, 14)  # a wrapping column is never made narrower than this (or its longest word):
                       # 20 unless that costs a column or the table, then 14
NOTE_MIN = 24      # a value this long, repeated in a column, becomes a note below the table

# A word for wrapping: a date with its time (and zone) is one word; so is anything without spaces.
_WORD = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| [A-Z]{2,5}\b)?\S*|\S+")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]00:?00)?")

SHORT_TEXT = {"id": "ids as their first 8 characters", "time": "times to the second, UTC"}


def words(text: str) -> list[str]:
    return [m.group(0) for m in _WORD.finditer(text)]


def wrap(text: str, width: int) -> list[str]:
    """Greedy wrap between words; a word wider than `width` keeps its own line, whole."""
    lines: list[str] = []
    for para in text.split("\n"):
        indent = " " * (len(para) - len(para.lstrip(" ")))
        cur = ""
        for w in words(para):
            if not cur:
                cur = indent + w
            elif cell_len(cur) + 1 + cell_len(w) <= width:
                cur += " " + w
            else:
                lines.append(cur)
                cur = indent + w
        lines.append(cur)
    return lines


def shorten(value: str, how: Literal["id", "time"]) -> str:
    """A declared short form: `5f0d2c1e…` for an id, `2026-11-22T10:00:03Z` for a timestamp.
    Values of another shape are left whole."""
    if how == "id":
        m = _GUID.search(value)
        return value.replace(m.group(0), m.group(0)[:8] + "…") if m else value
    m = _ISO.fullmatch(value.strip())
    return f"{m.group(1)}T{m.group(2)}Z" if m and m.group(3) else value


@dataclass
class Fitted:
    """A table laid out for one width: the columns kept, their widths (None: the block layout),
    and the lines that say what gave way."""

    columns: list[str]
    rows: list[list[str]]
    widths: list[int] | None
    keys: list[bool]
    above: list[str] = field(default_factory=list)
    below: list[str] = field(default_factory=list)


def _natural(header: str, cells: list[str]) -> int:
    return max([cell_len(header)] + [cell_len(c) for c in cells])


def _minimum(header: str, cells: list[str], floor: int) -> int:
    longest = max([cell_len(w) for w in words(header)] + [cell_len(w) for c in cells for w in words(c)] + [1])
    natural = _natural(header, cells)
    return min(natural, max(longest, floor))


def _total(widths: list[int]) -> int:
    return sum(widths) + GAP * max(0, len(widths) - 1)


def fit(columns: list[str], rows: list[list[str]], layout: Mapping[str, Col], width: int | None) -> Fitted:
    """Lay a table out for `width` columns (None: unlimited) by the steps in the module's docstring:
    text columns at least 20 wide, unless that leaves out a column more (or needs blocks) than 14."""
    wide, narrow = (_fit(columns, rows, layout, width, floor) for floor in WRAP_FLOORS)
    if wide.widths is not None and len(wide.columns) >= len(narrow.columns):
        return wide
    return narrow


def _fit(columns: list[str], rows: list[list[str]], layout: Mapping[str, Col], width: int | None,
         floor: int) -> Fitted:
    cols = [clean(c) for c in columns]
    body = [[clean(c) for c in r] + [""] * (len(cols) - len(r)) for r in rows]
    specs = [layout.get(c, Col()) for c in columns]

    def column(i: int) -> list[str]:
        return [r[i] for r in body]

    def fitted(keep: list[int], widths: list[int] | None) -> Fitted:
        return Fitted([cols[i] for i in keep], [[r[i] for i in keep] for r in body], widths,
                      [specs[i].key for i in keep], above, below)

    above: list[str] = []
    below: list[str] = []
    keep = list(range(len(cols)))
    if width is None or _total([_natural(cols[i], column(i)) for i in keep]) <= width:
        return fitted(keep, [_natural(cols[i], column(i)) for i in keep])

    def fits() -> bool:
        return _total([_minimum(cols[i], column(i), floor) for i in keep]) <= width

    # 1. the same value in every row: said once, above the table
    if len(body) >= 2:
        lifted = []
        for i in list(keep):
            values = set(column(i))
            if len(values) == 1 and not specs[i].key and len(keep) > 1:
                keep.remove(i)
                value = values.pop()
                if value.strip() and value != "-":
                    lifted.append(f"{cols[i]} {value}")
        if lifted:
            above.append("Every row: " + "; ".join(lifted))
    # 2. long values repeated in a column: a numbered note below the table
    if not fits() or _total([_natural(cols[i], column(i)) for i in keep]) > width:
        notes: dict[str, int] = {}
        for i in keep:
            if specs[i].key or not specs[i].note:
                continue
            counts: dict[str, int] = {}
            for v in column(i):
                counts[v] = counts.get(v, 0) + 1
            for v, n in counts.items():
                if n >= 2 and cell_len(v) > NOTE_MIN and v not in notes:
                    notes[v] = len(notes) + 1
            for r in body:
                if r[i] in notes:
                    r[i] = f"[{notes[r[i]]}]"
        below += [f"[{n}] {v}" for v, n in notes.items()]
    whole = [list(r) for r in body]   # what the block layout shows: no short forms, nothing left out
    in_blocks = list(keep)
    # 3. declared short forms
    if not fits():
        shortened = []
        for i in keep:
            how = specs[i].short
            if how is None:
                continue
            for r in body:
                r[i] = shorten(r[i], how)
            shortened.append(f"{cols[i]} ({SHORT_TEXT[how]})")
        if shortened:
            below.append(f"Short forms at {width} columns: {', '.join(shortened)}; -o json or -o markdown has "
                         "every value whole.")
    # 4. low-value columns left out, in their declared order
    dropped = []
    for i in sorted((i for i in keep if specs[i].drop is not None), key=lambda i: (specs[i].drop or 0, i)):
        if fits():
            break
        keep.remove(i)
        dropped.append(cols[i])
    if dropped:   # a column left out is not also said to be shortened
        below[:] = [b if not b.startswith("Short forms") else
                    re.sub(r"(?:, )?(" + "|".join(re.escape(d) for d in dropped) + r") \([^)]*\)", "", b)
                    for b in below]
        below[:] = [b.replace("columns: , ", "columns: ") for b in below
                    if not re.match(r"Short forms at \d+ columns: ?;", b)]
        below.append(f"Left out at {width} columns: {', '.join(dropped)}; a wider terminal, -o json or -o markdown "
                     "shows them.")
    if not fits():  # 5. one block per row
        below[:] = [b for b in below if not b.startswith(("Short forms", "Left out"))]
        return Fitted([cols[i] for i in in_blocks], [[r[i] for i in in_blocks] for r in whole], None,
                      [specs[i].key for i in in_blocks], above, below)
    mins = [_minimum(cols[i], column(i), floor) for i in keep]
    nats = [_natural(cols[i], column(i)) for i in keep]
    spare = width - _total(mins)
    widths = list(mins)
    # the spare columns go first to the columns that then need not wrap at all (the cheapest first),
    # the rest to the widest text
    for j in sorted(range(len(widths)), key=lambda k: nats[k] - widths[k]):
        need = nats[j] - widths[j]
        if 0 < need <= spare:
            widths[j] += need
            spare -= need
    if spare > 0:
        j = max(range(len(widths)), key=lambda k: nats[k] - widths[k])
        widths[j] += min(spare, nats[j] - widths[j])
    return fitted(keep, widths)


def _row_lines(cells: list[str], widths: list[int], style: str | None, header: bool = False) -> list[Text]:
    wrapped = [wrap(c, w) for c, w in zip(cells, widths)]
    height = max(len(w) for w in wrapped)
    out = []
    for n in range(height):
        line = Text(style="bold" if header else (style or ""))
        for k, (lines, w) in enumerate(zip(wrapped, widths)):
            part = lines[n] if n < len(lines) else ""
            last = k == len(widths) - 1
            line.append(part + " " * (w - cell_len(part) + (0 if last else GAP)))
        out.append(line)
    return out


def render_table(fitted: Fitted, styles: list[str], width: int | None) -> list[Text]:
    """The lines of a fitted table (or its blocks), styled."""
    lines: list[Text] = [Text(line) for text in fitted.above for line in wrap(text, width or 10**6)]
    if fitted.widths is not None:
        lines += _row_lines(fitted.columns, fitted.widths, None, header=True)
        for i, r in enumerate(fitted.rows):
            style = styles[i] if i < len(styles) else ""
            lines += _row_lines(r, fitted.widths, STYLE.get(style, style) or None)
    else:
        label = max((cell_len(c) for c, k in zip(fitted.columns, fitted.keys) if not k), default=0)
        for i, r in enumerate(fitted.rows):
            style = styles[i] if i < len(styles) else ""
            head = "  ".join(c for c, k in zip(r, fitted.keys) if k and c) or r[0]
            lines.append(Text(head, style=STYLE.get(style, style) or "bold"))
            for c, v, k in zip(fitted.columns, r, fitted.keys):
                if k or not v:
                    continue
                indent = 2 + label + 2
                body = wrap(v, max(10, (width or 10**6) - indent))
                if width is not None and max(cell_len(b) for b in body) > width - indent:
                    # a word too long for beside the label: the value goes under it, whole
                    lines.append(Text("  " + c))
                    lines += [Text("    " + more) for more in wrap(v, width - 4)]
                    continue
                lines.append(Text("  " + c.ljust(label) + "  " + body[0]))
                lines += [Text(" " * indent + more) for more in body[1:]]
    lines += [Text(line) for text in fitted.below for line in wrap(text, width or 10**6)]
    return lines


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`vmctl list | head`: the reader left. Rich exits 1 here; vmctl's error handler exits 0."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise BrokenPipeError


def layout_width(stream: TextIO) -> int | None:
    """The width tables are laid out for: on a terminal, its width (COLUMNS, when set, wins, as
    for every tool that asks the terminal); off a terminal None: natural width, nothing wraps,
    so `vmctl list > file` and `| grep` get one whole line per row."""
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) >= 20:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def console_for(stream: TextIO) -> Console:
    color = wants_color(stream)
    return _Console(file=stream, no_color=not color, highlight=False, force_terminal=color,
                    width=10**4, soft_wrap=True, emoji=False)


def table(out: Output, stream: TextIO, width: int | None = None) -> None:
    """Print `out` as tables for a terminal `width` columns wide (default: `layout_width(stream)`)."""
    con = console_for(stream)
    width = width if width is not None else layout_width(stream)

    def put(lines: list[Text]) -> None:
        for line in lines:
            con.print(line, soft_wrap=True, crop=False)

    if out.columns:
        put(render_table(fit(out.columns, out.rows, out.layout, width), out.row_styles, width))
    for s in out.sections:
        title = safe(s.title)
        title.stylize("bold")
        con.print(title, soft_wrap=True, crop=False)
        for line in s.lines:
            body = wrap(clean(line), (width or 10**6) - 2)
            put([Text("  " + body[0])] + [Text("    " + more) for more in body[1:]])
        if s.columns:
            put(render_table(fit(s.columns, s.rows, s.layout, width), [], width))
        con.print()
    for line in out.footer:
        put([Text(x) for x in wrap(clean(line), width or 10**6)])


def before_prompt(out: Output, asked: bool, stream: TextIO | None = None, height: int | None = None) -> bool:
    """Repeat `out.recap` (a plan's counts, production and billing) right above the confirmation
    prompt when the table printed above it is taller than the terminal, so the operator answers
    looking at what they confirm. Returns whether it printed."""
    if not asked or not out.recap:
        return False
    stream = stream or sys.stderr
    width = layout_width(sys.stdout)
    shown = len(render_table(fit(out.columns, out.rows, out.layout, width), out.row_styles, width)) + len(out.footer)
    rows = height or shutil.get_terminal_size().lines
    if shown + len(out.recap) + 2 <= rows:
        return False
    con = console_for(stream)
    con.print()
    for line in out.recap:
        for part in wrap(clean(line), width or 10**6):
            con.print(Text(part, style="bold"), soft_wrap=True, crop=False)
    return True
