"""`vmctl list` and `vmctl show`."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

if TYPE_CHECKING:
    from ..cloud import Connection, FleetClient
    from ..config import Config
    from ..inventory import Inventory, Need
    from ..pacing import Pacer
    from ..selection import Selector
    from ..sources import Scope

from ._common import (
    AllSubscriptions,
    ArmEndpoint,
    Cloud,
    CommandContext,
    Common,
    ConfigPath,
    Debug,
    ExcludeTags,
    FleetSource,
    Groups,
    Ids,
    IncludeProduction,
    Locations,
    ManagementGroup,
    Names,
    OutputFormat,
    PowerStates,
    Query,
    Subscriptions,
    Tags,
    Verbose,
    connection_for,
    handle_errors,
    read_ids,
    resolve_output,
)


def _setup(common: Common, *, groups: list[str], names: list[str], ids: list[str], tags: list[str],
           exclude_tags: list[str], locations: list[str], power_states: list[str],
           include_production: bool, all_vms: bool | None = None) -> CommandContext:
    """Everything that can be refused without a request: config, output, selection, subscriptions.
    `all_vms` is given by action commands (their --all): they must select something or say --all."""
    from ..config import load_config
    from ..preflight import check_query
    from ..selection import build_selector, check_scope

    config = load_config(common.config_path)
    fmt = resolve_output(common.output, config.output)
    check_query(common.query)
    selector = build_selector(
        resource_groups=groups, names=names, ids=read_ids(list(ids)), tags=tags, exclude_tags=exclude_tags,
        locations=locations, power_states=power_states, include_production=include_production,
        tag_values_case_sensitive=config.tag_values_case_sensitive)
    if all_vms is not None:
        check_scope(selector, all_vms)
    connection = connection_for(common, config)
    scope = resolve_scope(common, config, selector, connection)
    from ..sources import choose_source

    return CommandContext(config, fmt, selector, list(scope.subscriptions), connection,
                          choose_source(common.source, config, scope), scope)


def check_scope_flags(common: Common) -> None:
    """--source, --all-subscriptions and --management-group, checked before any request (exit 2)."""
    from ..errors import InputError
    from ..sources import SOURCE_CHOICES

    if common.source is not None and common.source.strip().lower() not in SOURCE_CHOICES:
        raise InputError(f"--source '{common.source}' is not a source.",
                         "Use arm (ARM's listings), graph (Azure Resource Graph) or auto.")
    mg = common.management_group
    if mg is not None and not mg.strip():
        raise InputError("--management-group is empty.", "Give the management group's ID (its name, not its display name).")
    if mg is not None and (common.subscriptions or common.all_subscriptions):
        raise InputError("--management-group is a scope of its own; it cannot be combined with "
                         + ("--subscription." if common.subscriptions else "--all-subscriptions."),
                         "Give one scope: --subscription, --all-subscriptions or --management-group.")
    if common.all_subscriptions and common.subscriptions:
        raise InputError("--all-subscriptions and --subscription name different scopes.",
                         "Give one of them.")


def resolve_scope(common: Common, config: Config, selector: Selector, connection: Connection) -> Scope:
    """What the command reads: --subscription (or AZURE_SUBSCRIPTION_ID, or the config's),
    --all-subscriptions (GET /subscriptions, once) or --management-group."""
    from ..errors import InputError
    from ..inventory import resolve_subscriptions
    from ..sources import Scope

    check_scope_flags(common)
    if common.management_group is not None:
        return Scope(management_group=common.management_group.strip())
    if common.all_subscriptions:
        visible = subscription_lister(connection)()
        subs = list(dict.fromkeys(s.lower() for s, _ in visible if s))
        if not subs:
            raise InputError("--all-subscriptions: this identity can read no subscription.",
                             "Check the sign-in (`az account list -o table`) or ask for Reader access.")
        for ref in selector.ids:
            if ref.subscription_id not in subs:
                raise InputError(f"--ids names subscription {ref.subscription_id}, which this identity cannot read.",
                                 "Check the resource ID, or ask for Reader access on it.")
        return Scope(tuple(subs), all_subscriptions=True, visible=tuple(visible))
    subs = resolve_subscriptions(common.subscriptions, os.environ.get("AZURE_SUBSCRIPTION_ID"), config, selector,
                                 lister=subscription_lister(connection))
    return Scope(tuple(subs))


def read_fleet(ctx: CommandContext, client: FleetClient, needs: tuple[Need, ...] = (), pacer: Pacer | None = None) -> Inventory:
    """The inventory from the source the command resolved: ARM's listings, or Azure Resource Graph
    (whose coverage warnings go to stderr)."""
    from ..inventory import load_inventory

    if ctx.source == "graph" and ctx.scope is not None:
        from ..config import pace_scale
        from ..sources import GraphPacer, load_graph_inventory

        inv = load_graph_inventory(client, ctx.scope, ctx.selector, ctx.config, pacer=GraphPacer(pace_scale(ctx.config)),
                                   needs=needs, read_pacer=pacer)
        note_coverage(inv)
        return inv
    return load_inventory(client, ctx.subscriptions, ctx.selector, ctx.config, needs=needs, pacer=pacer)


def note_coverage(inv: Inventory) -> None:
    """A subscription asked for that could not be read, or a scope cut at Azure's limit: said on
    stderr whatever the output format (the table footer and the JSON summary say it too)."""
    from ..views import coverage_warnings

    if inv.coverage is not None:
        for line in coverage_warnings(inv.coverage):
            typer.echo(f"warning: {line}.", err=True)


def subscription_lister(connection: Connection) -> Callable[[], list[tuple[str, str]]]:
    """Names given for subscriptions are looked up through GET /subscriptions, only when one is."""

    def lister() -> list[tuple[str, str]]:
        from ..cloud import make_client

        return make_client(connection).list_subscriptions()

    return lister


@handle_errors
def list_cmd(
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    show_tags: Annotated[Optional[str], typer.Option("--show-tags", metavar="K1,K2", help="Tag names to show as columns, comma-separated.")] = None,
    subscription: Subscriptions = [], all_subscriptions: AllSubscriptions = False, management_group: ManagementGroup = None,
    source: FleetSource = None, cloud: Cloud = None, arm_endpoint: ArmEndpoint = None,
    config: ConfigPath = None, output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """List VMs with power state, billing, placement, maintenance and production marker.

    Paged listings per subscription (never one request per VM). A stopped VM is shown as still
    billed; only a deallocated VM has released its compute. Across many subscriptions or a
    management group the fleet is read through Azure Resource Graph (--source), which says which
    subscriptions it covered.

    Examples:

        vmctl list -s 00000000-0000-0000-0000-000000000001 --tag env=dev --show-tags app,owner

        vmctl list --power-state stopped -o json --query "[].id"

        vmctl list --all-subscriptions --source graph --tag env=dev
    """
    from ..cloud import make_client
    from ..render import emit
    from ..views import vm_list_output

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug, source, all_subscriptions,
                    management_group)
    ctx = _setup(
        common, groups=resource_group, names=name, ids=ids, tags=tag, exclude_tags=exclude_tag,
        locations=location, power_states=power_state, include_production=include_production)
    from .actions import make_pacer

    tag_cols = [t.strip() for t in (show_tags or "").split(",") if t.strip()]
    inv = read_fleet(ctx, make_client(ctx.connection), pacer=make_pacer(ctx.config))
    note_selection(inv)
    emit(vm_list_output(inv, list(inv.subscriptions), tag_cols, datetime.now(timezone.utc)), ctx.fmt, query)


def note_selection(inv: Inventory) -> None:
    """A read says on stderr when a -n / --location value, or the whole selection, matched no VM
    (exit 0 stays: nothing was asked to change)."""
    rep = inv.selection
    if rep is None:
        return
    for miss in rep.misses:
        typer.echo(f"note: {miss}.", err=True)
    if not inv.vms:
        typer.echo(f"note: no VM matches the selection; searched {rep.searched}.", err=True)
        for reason in rep.reasons:
            typer.echo(f"note: {reason}.", err=True)


@handle_errors
def show_cmd(
    vms: Annotated[list[str], typer.Argument(metavar="VM...", help="VM names (with -g) or full resource IDs.", show_default=False)],
    resource_group: Annotated[Optional[str], typer.Option("--resource-group", "-g", metavar="GROUP", help="Resource group of the named VMs.")] = None,
    subscription: Subscriptions = [], source: FleetSource = None, cloud: Cloud = None, arm_endpoint: ArmEndpoint = None,
    config: ConfigPath = None, output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Show a VM's full instance view, with pending maintenance explained in words.

    Always read through ARM (--source auto or arm): Azure Resource Graph carries no instance view.

    Examples:

        vmctl show -g rg-web web-01 web-02

        vmctl show /subscriptions/<sub>/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01 -o json
    """
    from ..cloud import make_client
    from ..config import load_config
    from ..errors import InputError
    from ..inventory import resolve_subscriptions
    from ..preflight import check_query
    from ..render import emit
    from ..selection import VmRef, parse_resource_id
    from ..views import vm_show_output

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug, source)
    check_scope_flags(common)
    if source is not None and source.strip().lower() == "graph":
        raise InputError("vmctl show reads each VM's instance view (statuses, agent, disks, maintenance), which "
                         "Azure Resource Graph does not carry.", "Leave out --source, or give --source arm or auto.")
    cfg = load_config(common.config_path)
    fmt = resolve_output(common.output, cfg.output)
    check_query(query)
    refs: list[VmRef] = []
    by_name = [v for v in vms if not v.startswith("/")]
    if by_name and not resource_group:
        raise InputError(f"VM '{by_name[0]}' is given by name without --resource-group.",
                         "Add -g GROUP, or give the full resource ID.")
    default_sub = None
    connection = connection_for(common, cfg)
    if by_name:
        default_sub = resolve_subscriptions(common.subscriptions, os.environ.get("AZURE_SUBSCRIPTION_ID"), cfg,
                                            lister=subscription_lister(connection))[0]
    for v in vms:
        refs.append(parse_resource_id(v) if v.startswith("/") else VmRef(default_sub or "", resource_group or "", v))
    client = make_client(connection)
    names: dict[str, str] = {}
    shown = []
    for ref in refs:
        if ref.subscription_id not in names:
            names[ref.subscription_id] = client.subscription_name(ref.subscription_id)
        vm, view = client.get_vm(ref.subscription_id, ref.resource_group, ref.name, names[ref.subscription_id])
        shown.append((replace(vm, production=cfg.is_production(vm)), view))
    emit(vm_show_output(shown, datetime.now(timezone.utc)), fmt, query)
