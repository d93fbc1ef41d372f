"""Options shared by every command, defined once; the one place that maps errors to exit codes."""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Callable, Mapping, Optional, ParamSpec, TypedDict, TypeVar

import typer

from ..errors import INTERRUPTED, InputError, VmctlError

if TYPE_CHECKING:  # for annotations only: importing the cloud or config modules here would slow every start
    from ..cloud import Connection
    from ..config import Config
    from ..selection import Selector
    from ..sources import Scope, Source

P = ParamSpec("P")
R = TypeVar("R")


class SelectionArgs(TypedDict):
    """The selection flags, as `_setup` takes them."""

    groups: list[str]
    names: list[str]
    ids: list[str]
    tags: list[str]
    exclude_tags: list[str]
    locations: list[str]
    power_states: list[str]
    include_production: bool

# ---------------------------------------------------------------- connection and output
Subscriptions = Annotated[list[str], typer.Option(
    "--subscription", "-s", metavar="ID|NAME",
    help="Subscription ID or name (repeatable). Default: AZURE_SUBSCRIPTION_ID, then the config file.")]
FleetSource = Annotated[Optional[str], typer.Option(
    "--source", metavar="arm|graph|auto",
    help="Where the fleet is read: arm (ARM's listings: current, 2 requests per 200 VMs per subscription), graph "
         "(Azure Resource Graph: 1 query per 1,000 VMs over many subscriptions, up to a minute stale; a plan is "
         "re-checked through ARM before acting) or auto (graph above 3 subscriptions or for a management group). "
         "Default: the config's inventory.source, else auto.")]
AllSubscriptions = Annotated[bool, typer.Option(
    "--all-subscriptions", help="Every subscription this identity can read (GET /subscriptions), instead of --subscription.")]
ManagementGroup = Annotated[Optional[str], typer.Option(
    "--management-group", metavar="ID",
    help="Every subscription under this management group, read through Azure Resource Graph.")]
Cloud = Annotated[Optional[str], typer.Option(
    "--cloud", metavar="NAME", help="AzureCloud (default), AzureUSGovernment or AzureChinaCloud: picks ARM endpoint, token scope, authority.")]
ArmEndpoint = Annotated[Optional[str], typer.Option(
    "--arm-endpoint", envvar="VMCTL_ARM_ENDPOINT", show_envvar=True,
    metavar="URL", help="Any other ARM endpoint: the vmctl simulator, Azure Stack Hub.")]
ConfigPath = Annotated[Optional[str], typer.Option(
    "--config", metavar="PATH", help="Config file. Default: VMCTL_CONFIG, ./vmctl.toml, ~/.config/vmctl/config.toml.")]
OutputFormat = Annotated[Optional[str], typer.Option(
    "--output", "-o", envvar="VMCTL_OUTPUT", show_envvar=True, metavar="FORMAT", help="table (default), json, csv, markdown or tsv (tab-separated cells, no header, for piping).")]
Query = Annotated[Optional[str], typer.Option(
    "--query", metavar="JMESPATH", help="JMESPath expression over the JSON data, e.g. \"[?powerState=='stopped'].id\".")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks and the SDK's HTTP log on errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="One line per HTTP call on stderr: method, path, status, time, request id, throttle budgets left.")]

# ---------------------------------------------------------------- selection
Groups = Annotated[list[str], typer.Option("--resource-group", "-g", metavar="GROUP", help="Resource group (repeatable).")]
Names = Annotated[list[str], typer.Option("--name", "-n", metavar="GLOB", help="VM name or glob, e.g. 'web-*' (repeatable).")]
Ids = Annotated[list[str], typer.Option(
    "--ids", metavar="ID...|@FILE|-",
    help="Full VM resource IDs, several after one --ids as az takes them (space- or newline-separated); "
         "@FILE reads them from a file, - from stdin.")]
Tags = Annotated[list[str], typer.Option(
    "--tag", metavar="EXPR", help="Tag expression, all must match: key=value, key=v1,v2, key, key!=value, !key (repeatable).")]
ExcludeTags = Annotated[list[str], typer.Option(
    "--exclude-tag", metavar="EXPR", help="Tag expression; any match excludes the VM (repeatable).")]
Locations = Annotated[list[str], typer.Option("--location", metavar="REGION", help="Azure region, e.g. westeurope (repeatable).")]
PowerStates = Annotated[list[str], typer.Option(
    "--power-state", metavar="STATE", help="running, stopped, deallocated, starting, stopping, deallocating (repeatable).")]
IncludeProduction = Annotated[bool, typer.Option(
    "--include-production", help="Let action commands target production VMs (they are excluded by default).")]
AllVms = Annotated[bool, typer.Option(
    "--all", help="Act on every VM of the subscriptions: an action command with no -g, -n, --ids, --tag, "
                  "--location or --power-state is refused without it. Production stays excluded unless "
                  "--include-production.")]


def spread_ids(args: list[str]) -> list[str]:
    """`--ids A B C` as az takes it (argparse nargs='+'): every word after --ids's value up to the
    next option (a word starting with '-', except '-' itself, which is stdin) is one more --ids
    value. Rewritten to `--ids A --ids B --ids C` before the command line is parsed; nothing after
    `--` is touched."""
    out: list[str] = []
    state = ""  # "value": the next word is --ids's own value; "more": further words are ids too
    for i, a in enumerate(args):
        if a == "--":
            out.extend(args[i:])
            break
        if state == "value":
            out.append(a)
            state = "more"
            continue
        if state == "more" and (a == "-" or not a.startswith("-")):
            out += ["--ids", a]
            continue
        state = "value" if a == "--ids" else "more" if a.startswith("--ids=") else ""
        out.append(a)
    return out


def read_ids(values: list[str]) -> list[str]:
    """Expand --ids values: literal IDs (several words after one --ids, see `spread_ids`), @FILE, or
    - (stdin), as `az ... -o tsv` prints them or as JSON (`selection.ids_from_text`). An unreadable
    file, a directory or text that is not UTF-8 is an InputError naming it."""
    from ..selection import ids_from_text

    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        # words of one JSON document split by the shell (`--ids $(vmctl list -o json --query [].id)`)
        # are joined again, as az does; plain IDs come out the same either way
        if literal:
            out.extend(ids_from_text(" ".join(literal), "value"))
            literal.clear()

    for v in values:
        if v == "-":
            flush()
            try:
                text = sys.stdin.read()
            except UnicodeDecodeError:
                raise InputError("--ids -: standard input is not UTF-8 text.",
                                 "Pipe resource IDs in, one per line (az ... --query [].id -o tsv).") from None
            out.extend(ids_from_text(text, "-"))
        elif v.startswith("@"):
            flush()
            name = v[1:]
            if not name:
                raise InputError("--ids @ needs a file name after the @.", "Example: --ids @vms.txt, or --ids - for stdin.")
            if os.path.isdir(name):
                raise InputError(f"--ids {v}: {name} is a directory.", "Give a file with one resource ID per line.")
            try:
                with open(name, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise InputError(f"--ids {v}: cannot read {name}: {exc.strerror}.",
                                 "Give a file with one resource ID per line.") from exc
            except UnicodeDecodeError:
                raise InputError(f"--ids {v}: {name} is not UTF-8 text.",
                                 "Give a text file with one resource ID per line.") from None
            out.extend(ids_from_text(text, v))
        else:
            literal.append(v)
    flush()
    if values and not out:
        raise InputError("--ids was given but no resource IDs were read.", "Pipe IDs in, one per line, or check the file.")
    return out


@dataclass
class Common:
    subscriptions: list[str]
    cloud: str | None
    arm_endpoint: str | None
    config_path: str | None
    output: str | None
    query: str | None
    debug: bool
    source: str | None = None            # --source (None: the config's, else auto)
    all_subscriptions: bool = False      # --all-subscriptions
    management_group: str | None = None  # --management-group


@dataclass(frozen=True)
class CommandContext:
    """What every command that reads the fleet has settled before its first request."""

    config: Config
    fmt: str
    selector: Selector
    subscriptions: list[str]
    connection: Connection
    source: Source = "arm"     # where the fleet is read (--source, resolved for this scope)
    scope: Scope | None = None


def resolve_output(flag: str | None, config_output: str | None) -> str:
    from ..render import FORMATS

    if flag is not None and not flag.strip():
        raise InputError("--output is empty.", f"Use one of: {', '.join(FORMATS)}, or leave it out.")
    fmt = (flag or config_output or "table").strip().lower()
    if fmt not in FORMATS:
        raise InputError(f"--output '{fmt}' is not a format.", f"Use one of: {', '.join(FORMATS)}.")
    return fmt


def connection_for(common: Common, config: Config) -> Connection:
    from ..cloud import CLOUDS, Connection

    cloud = common.cloud or config.cloud or "AzureCloud"
    if cloud not in CLOUDS:
        raise InputError(f"--cloud '{cloud}' is not a known cloud.", f"Use one of: {', '.join(CLOUDS)}.")
    endpoint = common.arm_endpoint or config.arm_endpoint
    if endpoint and not endpoint.startswith("https://"):
        raise InputError(f"--arm-endpoint '{endpoint}' must be an https:// URL.",
                         "ARM requires TLS; the simulator serves https too.")
    return Connection(cloud=cloud, arm_endpoint=endpoint)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """An error message echoes the user's input (a tag expression, a path, a tag value from Azure):
    terminal control characters in it are shown as \\xNN, never obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn VmctlError into one clear message and its exit code; no traceback unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from .._startup import release

        release()  # start-up is over: the garbage collector runs again (vmctl/_startup.py)
        debug = bool(kwargs.get("debug")) or os.environ.get("VMCTL_DEBUG") == "1"
        import logging

        if debug:
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                                format="%(asctime)s %(name)s %(levelname)s %(message)s")
        http_log = logging.getLogger("vmctl.http")
        verbose: logging.Handler | None = None
        if kwargs.get("verbose") and not debug:
            verbose = logging.StreamHandler(sys.stderr)
            verbose.setFormatter(logging.Formatter("http: %(message)s"))
            http_log.addHandler(verbose)
            http_log.setLevel(logging.INFO)
            http_log.propagate = False
        if not debug:
            # the SDK logs its own account of a failure (13 lines for a missing credential) before
            # vmctl's one-sentence error says the same; --debug shows it
            sdk_log = logging.getLogger("azure")
            if not sdk_log.handlers:
                sdk_log.addHandler(logging.NullHandler())
            sdk_log.propagate = False
        try:
            return _run(lambda: fn(*args, **kwargs), debug, kwargs)
        finally:
            if verbose is not None:
                http_log.removeHandler(verbose)
                http_log.setLevel(logging.NOTSET)

    return wrapper


def _run(call: Callable[[], R], debug: bool, kwargs: Mapping[str, object]) -> R:
    """`call()`, with VmctlError turned into its message and exit code (handle_errors)."""
    try:
        return call()
    except VmctlError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {printable(exc.message)}", err=True)
        if exc.hint:
            typer.echo(f"  {printable(exc.hint)}", err=True)
        _json_error(kwargs, type(exc).__name__, exc.message, exc.hint, exc.exit_code)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(INTERRUPTED) from None
    except BrokenPipeError:
        # `vmctl list | head`: the reader left; not an error worth a traceback or a failure code
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the flush at exit must not fail again
        except OSError:
            pass
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, traceback with --debug
        if debug:
            traceback.print_exc()
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        typer.echo("  This is a bug in vmctl; run again with --debug for the traceback and report it.", err=True)
        _json_error(kwargs, "InternalError", f"internal error: {type(exc).__name__}: {exc}",
                    "This is a bug in vmctl; run again with --debug for the traceback and report it.", 1)
        raise typer.Exit(1) from None



def _json_error(kwargs: Mapping[str, object], kind: str, message: str, hint: str | None, code: int) -> None:
    """Under `-o json` (or VMCTL_OUTPUT=json) an error is also a JSON document on stdout, in the
    same versioned envelope as every other output, so a CI job parsing stdout never gets nothing."""
    fmt = kwargs.get("output") or os.environ.get("VMCTL_OUTPUT") or ""
    if not isinstance(fmt, str) or fmt.strip().lower() != "json":
        return
    import json

    from .. import __version__
    from ..render import SCHEMA
    from ..timefmt import stamp

    doc = {"schema": SCHEMA, "kind": "error", "vmctlVersion": __version__,
           "generatedAt": stamp(),
           "error": {"type": kind, "message": message, "hint": hint, "exitCode": code}}
    try:
        typer.echo(json.dumps(doc))
    except BrokenPipeError:  # the reader left: nothing more to say
        pass
