"""`vmctl maintenance status` and `vmctl maintenance start` (perform-maintenance in waves)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from ..timefmt import parse_duration
from ._common import (
    ArmEndpoint,
    Cloud,
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
    handle_errors,
)
from .actions import _sel, action_command, make_pacer

app = typer.Typer(help="""Planned platform maintenance: see what is pending, start it in update-domain waves.

    Example:

        vmctl maintenance status -o markdown
    """, no_args_is_help=True)


def urgency(vm: Any, now: datetime) -> tuple[int, float]:
    """Most urgent first: startable VMs by their self-service window's end; the others by the next
    moment something happens to them (their self-service window opens, or Azure's window starts)."""
    m = vm.maintenance
    far = datetime.max.replace(tzinfo=timezone.utc).timestamp()
    if m.can_start_now(now):
        return (0, m.self_service_end.timestamp() if m.self_service_end else far)
    moments = [t.timestamp() for t in (m.self_service_start, m.scheduled_start) if t and t > now]
    return (1, min(moments) if moments else far)


@app.command("status")
@handle_errors
def status_cmd(
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    subscription: Subscriptions = [], cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False,
) -> None:
    """Every selected VM with pending platform maintenance, most urgent first.

    Shows the self-service window (when you may start it) and the scheduled window (when Azure
    does it), in UTC and local time, whether it can be started now, the last result, and the
    availability set with update/fault domain.

    Example:

        vmctl maintenance status -s 00000000-0000-0000-0000-000000000001 -o markdown
    """
    from ..cloud import make_client
    from ..inventory import load_inventory, set_key
    from ..render import Output, emit
    from ..timefmt import local, utc
    from ..views import placement, vm_json, window_state
    from .inventory import _setup

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug)
    cfg, fmt, selector, subs, connection = _setup(common, **_sel(resource_group, name, ids, tag, exclude_tag, location,
                                                                   power_state, include_production))
    inv = load_inventory(make_client(connection), subs, selector, cfg, parallel=cfg.parallel,
                         needs=("maintenance", "domains"), pacer=make_pacer(cfg))
    now = datetime.now(timezone.utc)
    pending = sorted((vm for vm in inv.vms if vm.maintenance is not None), key=lambda v: urgency(v, now))

    def window(start: datetime | None, end: datetime | None) -> str:
        if not start or not end:
            return "-"
        return f"{utc(start)} - {utc(end)} ({local(start)} local); {window_state(start, end, now)}"

    rows: list[list[str]] = []
    data: list[dict[str, Any]] = []
    per_set: dict[str, dict[str, Any]] = {}
    for vm in pending:
        m = vm.maintenance
        assert m is not None
        can = m.can_start_now(now)
        last = m.last_result or "None"
        rows.append([vm.subscription_name, vm.resource_group, vm.name, "yes" if can else "no",
                     window(m.self_service_start, m.self_service_end), window(m.scheduled_start, m.scheduled_end),
                     last + (f": {m.last_message}" if m.last_message else ""), placement(vm),
                     "PROD" if vm.production else ""])
        data.append(vm_json(vm, now))
        if vm.availability_set:
            entry = per_set.setdefault(set_key(vm), {"availabilitySet": vm.availability_set.lower(),
                                                     "resourceGroup": vm.resource_group, "pending": 0, "canStartNow": 0})
            entry["pending"] += 1
            entry["canStartNow"] += can
    startable = sum(1 for vm in pending if vm.maintenance and vm.maintenance.can_start_now(now))
    unread = [vm for vm in inv.vms if not vm.maintenance_known]
    summary = {"pending": len(pending), "canStartNow": startable, "byAzureInItsWindow": len(pending) - startable,
               "availabilitySets": list(per_set.values()), "notRead": [vm.id for vm in unread]}
    footer = [f"{len(pending)} VMs with pending maintenance: {startable} can be started now (vmctl maintenance start); "
              f"{len(pending) - startable} will be done by Azure in its scheduled window unless started when allowed."]
    footer += [f"  {e['resourceGroup']}/{e['availabilitySet']}: {e['pending']} pending, {e['canStartNow']} can start now"
               for e in per_set.values()]
    if unread:
        footer.append(f"WARNING: the maintenance status of {len(unread)} VMs could not be read "
                      f"({', '.join(vm.name for vm in unread[:5])}{', ...' if len(unread) > 5 else ''}); run again.")
    emit(Output(kind="maintenance-status", data=data, summary=summary,
                columns=["SUBSCRIPTION", "GROUP", "NAME", "START NOW", "SELF-SERVICE WINDOW", "SCHEDULED WINDOW (AZURE)",
                         "LAST RESULT", "PLACEMENT", "PROD"],
                rows=rows, footer=footer,
                row_styles=["ok" if r[3] == "yes" else "dim" for r in rows]), fmt, query)


def _maintenance_options(
    wave_by: Annotated[str, typer.Option("--wave-by", metavar="MODE", help="update-domain (default), tag:KEY or none.")] = "update-domain",
    pause: Annotated[str, typer.Option("--pause", metavar="DURATION", help="Pause between waves, e.g. 30s, 5m (Azure's own rollout pauses 30m).")] = "5m",
) -> dict[str, Any]:
    return {"wave_by": wave_by, "pause": parse_duration(pause, "--pause")}


start_cmd = app.command("start")(action_command("maintenance start", """Start pending platform maintenance (perform-maintenance) in waves.

    Only VMs Azure allows now, inside their self-service window, get a request (no 409s). The VMs
    of one availability set go one update domain at a time; a wave must be running again (and
    pass --post-hook) before the next starts.

    Example:

        vmctl maintenance start -g rg-web --pause 10m --post-hook ./healthcheck.sh --dry-run
    """, _maintenance_options))
