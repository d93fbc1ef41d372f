"""The vmctl command line. Command modules import heavy things (SDK, simulator) inside commands."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from .. import __version__
from . import _help, actions, apply, evidence, guest, inventory, maintenance, runs, sim
from ._common import spread_ids


class _Vmctl(TyperGroup):
    """The root command: `--ids A B C` is spread into repeated --ids before any parsing, so every
    command that selects VMs takes several ids after one flag, as az does."""

    # typer vendors click privately (typer._click.Context); typer.Context is its public subclass
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        return super().parse_args(ctx, spread_ids(args))


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="vmctl",
        cls=_Vmctl,
        help="""Safe, fast maintenance of Azure VM fleets: plan first, production excluded, evidence kept.

        Example:

            vmctl deallocate --tag env=dev --dry-run
        """,
        no_args_is_help=True,
        add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


app = _new_app()
app.add_typer(sim.app, name="sim")
app.command("list")(inventory.list_cmd)
app.command("show")(inventory.show_cmd)
app.command("stop")(actions.stop_cmd)
app.command("deallocate")(actions.deallocate_cmd)
app.command("start")(actions.start_cmd)
app.command("restart")(actions.restart_cmd)
app.add_typer(maintenance.app, name="maintenance")
app.command("evidence")(evidence.evidence_cmd)
app.command("apply")(apply.apply_cmd)
app.command("resume")(runs.resume_cmd)
app.command("report")(runs.report_cmd)
app.command("runs")(runs.runs_cmd)
app.add_typer(guest.app, name="guest")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """vmctl: stop, deallocate, restart and patch Azure VMs without hurting anyone."""


def app_for(args: list[str]) -> typer.Typer:
    """The app that runs `vmctl ARGS`. Typer turns every registered command into a click command
    before it parses anything (about 30 ms for vmctl's whole tree, 3 ms for one command), so for
    `vmctl COMMAND ...` the root carries only COMMAND. What the whole tree is needed for (no
    command, a root option, a mistyped command and its suggestions, shell completion) gets it."""
    if not args or args[0] not in COMMANDS or any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return app
    one = _new_app()
    one.registered_commands = [c for c in app.registered_commands if c.name == args[0]]
    one.registered_groups = [g for g in app.registered_groups if g.name == args[0]]
    one.registered_callback = app.registered_callback
    return one


def main() -> None:
    app_for(sys.argv[1:])()


_help.keep_all_examples_whole(app)  # every example in every --help shown as written, never re-wrapped
COMMANDS = frozenset([c.name for c in app.registered_commands if c.name] + [g.name for g in app.registered_groups if g.name])
