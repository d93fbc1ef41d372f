#!/usr/bin/env python3
"""Write docs/cli.md from every vmctl command's `--help`, one section per command.

    python scripts/gen_cli_docs.py           # (re)write docs/cli.md
    python scripts/gen_cli_docs.py --check   # exit 1 with a diff when docs/cli.md is stale

The help is rendered in-process (Typer's CliRunner) at a fixed width of 100 columns without
colour, so the output does not depend on the terminal that runs the script.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
WIDTH = 100
ENV = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def commands() -> Iterator[tuple[list[str], Any]]:
    """(path, command) for the root and every command and subcommand, in the order the help lists them."""
    import typer.main

    from vmctl.cli import app

    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def help_text(path: list[str]) -> tuple[int, str]:
    """The exit code and output of `vmctl PATH --help` at the fixed width."""
    from typer.testing import CliRunner

    from vmctl.cli import app

    res = CliRunner().invoke(app, [*path, "--help"], env=ENV, terminal_width=WIDTH, max_content_width=WIDTH)
    return res.exit_code, res.output


def render() -> str:
    out = ["# vmctl command reference", "",
           "Generated from each command's `--help` by `scripts/gen_cli_docs.py`; do not edit by hand.",
           "Regenerate with `python scripts/gen_cli_docs.py` (`make test` fails when this file is stale).", ""]
    sections = list(commands())
    out += ["| Command | |", "|---|---|"]
    for path, cmd in sections:
        name = " ".join(["vmctl", *path])
        anchor = name.replace(" ", "-")
        summary = cmd.get_short_help_str(limit=WIDTH).replace("|", "\\|")
        out.append(f"| [`{name}`](#{anchor}) | {summary} |")
    out.append("")
    for path, _ in sections:
        name = " ".join(["vmctl", *path])
        code, text = help_text(path)
        if code != 0:
            raise SystemExit(f"`{name} --help` exited {code}:\n{text}")
        out += [f"## {name}", "", "```text", text.rstrip("\n"), "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--check", action="store_true", help="exit 1 with a diff when docs/cli.md is stale")
    ap.add_argument("--output", type=Path, default=DOC, help="where to write (default docs/cli.md)")
    args = ap.parse_args(argv)
    new = render()
    if args.check:
        old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if old == new:
            return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                   f"{args.output} (committed)", f"{args.output} (from --help)"))
        print(f"\n{args.output} is stale: run `python scripts/gen_cli_docs.py` and commit it.", file=sys.stderr)
        return 1
    args.output.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
