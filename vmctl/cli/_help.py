"""Help text: the examples in a command's docstring are shown exactly as written, never re-wrapped.

Click re-flows every paragraph of a help text to the terminal's width, which breaks an example
command line mid-line (or mid-word at a hyphen). A paragraph that starts with a line holding only
`\\b` is left as it is (Click's documented escape), so every indented paragraph (an example) gets
one. Applied once to the whole app, so a command added later is covered too.
"""

from __future__ import annotations

import inspect

import typer


def keep_examples_whole(text: str) -> str:
    """`text` with Click's no-rewrap marker before each indented paragraph."""
    paragraphs = []
    for para in inspect.cleandoc(text).split("\n\n"):
        first = para.split("\n", 1)[0]
        if first[:1].isspace() and first.strip() and first.strip() != "\b":
            para = "\b\n" + para   # the lines keep their own indentation
        paragraphs.append(para)
    return "\n\n".join(paragraphs)


def keep_all_examples_whole(app: typer.Typer) -> None:
    """Mark the examples of `app`'s help, its commands' and its sub-apps', recursively."""
    if isinstance(app.info.help, str):
        app.info.help = keep_examples_whole(app.info.help)
    for cmd in app.registered_commands:
        text = cmd.help if isinstance(cmd.help, str) else inspect.getdoc(cmd.callback) if cmd.callback else None
        if text:
            cmd.help = keep_examples_whole(text)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = keep_examples_whole(group.help)
        if group.typer_instance is not None:
            keep_all_examples_whole(group.typer_instance)
