"""One renderer for every command: table (Rich), JSON (versioned envelope), CSV, Markdown.

Commands hand over an `Output`; nothing else prints results.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generic, Iterator, Literal, Mapping, Sequence, TextIO, TypeVar

from .. import __version__
from ..errors import InputError
from ..timefmt import stamp

SCHEMA = "vmctl/v1"
FORMATS = ("table", "json", "csv", "markdown", "tsv")


@dataclass(frozen=True)
class Col:
    """How a table column gives way on a narrow terminal (render/table.py says in which order)."""

    drop: int | None = None                    # left out when the table does not fit, lowest first; None: never
    short: Literal["id", "time"] | None = None  # its declared short form: ids to 8 characters, times to the second
    key: bool = False                          # identifies the row: never lifted, heads the row's block
    note: bool = True                          # a long value repeated in it may become a numbered note
STREAM_MIN = 1000  # JSON lists at least this long are written item by item, one compact item a line
T = TypeVar("T")


class LazyItems(Generic[T]):
    """A JSON list built item by item as it is written: the items of a large inventory are never
    all held at once (nor built at all for another format)."""

    def __init__(self, source: Sequence[T], item: Callable[[T], Any]) -> None:
        self.source, self.item = source, item

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Any]:
        return map(self.item, self.source)


def plain(data: object) -> object:
    """`data` with any LazyItems made a list (for --query and small outputs)."""
    return list(data) if isinstance(data, LazyItems) else data


@dataclass
class Section:
    """A titled block of `label: value` lines or a table, for detail views (show)."""

    title: str
    lines: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    layout: Mapping[str, Col] = field(default_factory=dict)


@dataclass
class Output:
    kind: str                         # e.g. "vm-list"; part of the JSON contract
    data: object                      # the JSON `data`
    summary: Mapping[str, object] | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    row_styles: list[str] = field(default_factory=list)
    layout: Mapping[str, Col] = field(default_factory=dict)  # per column name; a column not named: Col()
    tsv_rows: list[list[str]] | None = None  # -o tsv when there is no main table (vmctl show)
    recap: list[str] = field(default_factory=list)  # a long table's summary, repeated right above a prompt
    # builds `rows` and `row_styles` when a format needs them (so JSON output never builds them)
    build_rows: Callable[[], tuple[list[list[str]], list[str]]] | None = None

    def materialize(self) -> None:
        if self.build_rows is not None:
            self.rows, self.row_styles = self.build_rows()
            self.build_rows = None


def envelope(out: Output, now: datetime | None = None) -> dict[str, object]:
    env: dict[str, object] = {
        "schema": SCHEMA, "kind": out.kind, "vmctlVersion": __version__,
        "generatedAt": stamp(now),
        "data": out.data,
    }
    if out.summary is not None:
        env["summary"] = out.summary
    return env


def wants_color(stream: TextIO) -> bool:
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def emit(out: Output, fmt: str, query: str | None = None, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if fmt not in FORMATS:
        raise InputError(f"--output '{fmt}' is not a format.", f"Use one of: {', '.join(FORMATS)}.")
    if query:
        emit_query(out, fmt, query, stream)
        return
    if fmt == "json":
        write_json(envelope(out), stream)
        return
    out.materialize()
    if fmt == "csv":
        _csv(out, stream)
    elif fmt == "tsv":
        _tsv(out, stream)
    elif fmt == "markdown":
        stream.write(markdown(out))
    else:
        from .table import table

        table(out, stream)


def emit_query(out: Output, fmt: str, query: str, stream: TextIO) -> None:
    """--query: a JMESPath expression over the envelope's `data`, as az users expect."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        result = jmespath.search(query, json.loads(json.dumps(plain(out.data), default=str)))
    except JMESPathError as exc:
        raise InputError(f"--query '{query}' is not a valid JMESPath expression: {exc}.",
                         "Example: --query \"[?powerState=='stopped'].id\"") from exc
    scalars = isinstance(result, (str, int, float, bool)) or (
        isinstance(result, list) and all(isinstance(x, (str, int, float, bool)) for x in result))
    rows = isinstance(result, list) and all(
        isinstance(r, list) and all(isinstance(x, (str, int, float, bool)) or x is None for x in r) for r in result)
    if fmt == "tsv" and isinstance(result, (list, dict)) and not scalars and (rows or isinstance(result, dict)):
        # az's habit: `--query "[].[name, resourceGroup]" -o tsv` gives one tab-separated line per item
        for r in (result if isinstance(result, list) else [list(result.values())]):
            stream.write("\t".join(tsv_cell("" if x is None else x) for x in r) + "\n")
    elif fmt != "json" and scalars and result is not None:
        for item in (result if isinstance(result, list) else [result]):
            stream.write(f"{item}\n")
    else:
        stream.write(json.dumps(result, indent=2, default=str) + "\n")


def write_json(env: Mapping[str, object], stream: TextIO) -> None:
    """The envelope, indented. A long `data` list is written in chunks, one compact item a line,
    encoded by orjson: `indent` makes Python's json fall back to its pure-Python encoder (about 3x
    slower), and one string of the whole document would hold the inventory twice in memory."""
    data = env.get("data")
    if not isinstance(data, LazyItems) or len(data) < STREAM_MIN:
        stream.write(json.dumps({**env, "data": plain(data)} if "data" in env else env, indent=2, default=str) + "\n")
        return
    import orjson

    def encode(item: Any) -> str:
        return orjson.dumps(item, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    keys = list(env)
    stream.write("{\n")
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        if key != "data":
            value = json.dumps(env[key], indent=2, default=str).replace("\n", "\n  ")
            stream.write(f"  {json.dumps(key)}: {value}{comma}\n")
            continue
        stream.write('  "data": [')
        chunk: list[str] = []
        sep = "\n    "
        for item in data:
            chunk.append(encode(item))
            if len(chunk) == 500:
                stream.write(sep + ",\n    ".join(chunk))
                sep, chunk = ",\n    ", []
        if chunk:
            stream.write(sep + ",\n    ".join(chunk))
        stream.write(f"\n  ]{comma}\n")
    stream.write("}\n")


# CSV injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with = + - @ (or a
# tab or CR before one) as a formula. Such cells get a leading ' so they stay text. Two shapes are
# left alone because no spreadsheet reads them as a formula: a plain negative number (-3, -0.5)
# and the lone "-" vmctl prints for "none".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NEGATIVE = re.compile(r"-(\d+(\.\d+)?)?")


def csv_cell(value: object) -> str:
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NEGATIVE.fullmatch(text):
        return "'" + text
    return text


def _csv(out: Output, stream: TextIO) -> None:
    w = csv.writer(stream, lineterminator="\n")

    def row(cells: Sequence[object]) -> None:
        w.writerow([csv_cell(c) for c in cells])

    if out.columns:
        row(out.columns)
        for r in out.rows:
            row(r)
    for s in out.sections:
        if s.columns:
            w.writerow([])
            row([s.title])
            row(s.columns)
            for r in s.rows:
                row(r)
        else:
            for line in s.lines:
                row([s.title, line])


_TSV_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_TSV_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def tsv_cell(value: object) -> str:
    """One field of a TSV line: a tab, newline or CR inside a value would start a new field or
    line, so it is written as \\t, \\n or \\r; other control characters as \\xNN. Nothing else
    changes: no quoting, no truncation."""
    return _TSV_CONTROL.sub(lambda m: _TSV_ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), str(value))


def _tsv(out: Output, stream: TextIO) -> None:
    """`-o tsv`, as az prints it for piping: the table's cells, tab-separated, one row per line, no
    header, no colour, nothing cut. A command without a main table (show) prints its `tsv_rows`."""
    rows = out.rows if out.columns else (out.tsv_rows or [])
    for r in rows:
        stream.write("\t".join(tsv_cell(c) for c in r) + "\n")


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def md_escape(text: object) -> str:
    """Text from outside vmctl (a --ticket, a tag value, a VM name) made safe for one line of
    Markdown: line breaks become spaces (no new heading, list or table row can start), `|` is
    escaped (no new table cell), a leading `#` is escaped (no heading), and terminal control
    characters are shown as \\xNN. Use it for the report's title and meta lines."""
    flat = re.sub(r"\r\n|[\r\n\u2028\u2029\x0b\x0c]", " ", str(text)).replace("|", "\\|")
    flat = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", flat)  # ESC & co: shown, never obeyed by a terminal
    return re.sub(r"^(\s*)#", r"\1\\#", flat)


def _md_cell(text: str) -> str:
    return md_escape(text) or " "


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    buf.write("| " + " | ".join(_md_cell(c) for c in columns) + " |\n")
    buf.write("|" + "|".join("---" for _ in columns) + "|\n")
    for r in rows:
        buf.write("| " + " | ".join(_md_cell(c) for c in r) + " |\n")
    return buf.getvalue()


def markdown(out: Output) -> str:
    parts = []
    if out.columns:
        parts.append(_md_table(out.columns, out.rows))
    for s in out.sections:
        parts.append(f"### {s.title}\n")
        if s.columns:
            parts.append(_md_table(s.columns, s.rows))
        for line in s.lines:
            parts.append(f"- {md_escape(line)}\n")
    if out.footer:
        parts.append("\n" + "\n".join(f"**{md_escape(line)}**" if i == 0 else md_escape(line)
                                       for i, line in enumerate(out.footer)) + "\n")
    return "\n".join(p.rstrip("\n") + "\n" for p in parts)
