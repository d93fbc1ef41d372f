"""`vmctl list` and `vmctl show`."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

if TYPE_CHECKING:
    from ..cloud import Connection
    from ..inventory import Inventory

from ._common import (
    ArmEndpoint,
    Cloud,
    CommandContext,
    Common,
    ConfigPath,
    Debug,
    ExcludeTags,
    Groups,
    Ids,
    IncludeProduction,
    Locations,
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
    from ..inventory import resolve_subscriptions
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
    subs = resolve_subscriptions(common.subscriptions, os.environ.get("AZURE_SUBSCRIPTION_ID"), config, selector,
                                 lister=subscription_lister(connection))
    return CommandContext(config, fmt, selector, subs, connection)


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
    subscription: Subscriptions = [], cloud: Cloud = None, arm_endpoint: ArmEndpoint = None,
    config: ConfigPath = None, output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """List VMs with power state, billing, placement, maintenance and production marker.

    One paged status listing per subscription (never one request per VM). A stopped VM is
    shown as still billed; only a deallocated VM has released its compute.

    Examples:

        vmctl list -s 00000000-0000-0000-0000-000000000001 --tag env=dev --show-tags app,owner

        vmctl list --power-state stopped -o json --query "[].id"
    """
    from ..cloud import make_client
    from ..inventory import load_inventory
    from ..render import emit
    from ..views import vm_list_output

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug)
    ctx = _setup(
        common, groups=resource_group, names=name, ids=ids, tags=tag, exclude_tags=exclude_tag,
        locations=location, power_states=power_state, include_production=include_production)
    from .actions import make_pacer

    tag_cols = [t.strip() for t in (show_tags or "").split(",") if t.strip()]
    inv = load_inventory(make_client(ctx.connection), ctx.subscriptions, ctx.selector, ctx.config,
                         pacer=make_pacer(ctx.config))
    note_selection(inv)
    emit(vm_list_output(inv, ctx.subscriptions, tag_cols, datetime.now(timezone.utc)), ctx.fmt, query)


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
    vms: Annotated[list[str], typer.Argument(metavar="VM", help="VM names (with -g) or full resource IDs.", show_default=False)],
    resource_group: Annotated[Optional[str], typer.Option("--resource-group", "-g", metavar="GROUP", help="Resource group of the named VMs.")] = None,
    subscription: Subscriptions = [], cloud: Cloud = None, arm_endpoint: ArmEndpoint = None,
    config: ConfigPath = None, output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Show a VM's full instance view, with pending maintenance explained in words.

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

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug)
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
