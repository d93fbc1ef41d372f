"""`vmctl maintenance status` and `vmctl maintenance start` (perform-maintenance in waves)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer

from ..timefmt import parse_duration
from ._common import (
    AllSubscriptions,
    ArmEndpoint,
    Cloud,
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
    handle_errors,
)
from .actions import RunExtras, _sel, action_command, make_pacer

app = typer.Typer(help="""Planned platform maintenance: see what is pending, start it in update-domain waves.

    Example:

        vmctl maintenance status -o markdown
    """, no_args_is_help=True)


@app.command("status")
@handle_errors
def status_cmd(
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    subscription: Subscriptions = [], all_subscriptions: AllSubscriptions = False, management_group: ManagementGroup = None,
    source: FleetSource = None, cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Every selected VM with pending platform maintenance, most urgent first.

    Shows the self-service window (when you may start it) and the scheduled window (when Azure
    does it), in UTC and local time, whether it can be started now, the last result, and the
    availability set with update/fault domain.

    Example:

        vmctl maintenance status -s 00000000-0000-0000-0000-000000000001 -o markdown
    """
    from ..cloud import make_client
    from ..render import emit
    from ..views import maintenance_status_output
    from .inventory import _setup, read_fleet

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug, source, all_subscriptions,
                    management_group)
    ctx = _setup(common, **_sel(resource_group, name, ids, tag, exclude_tag, location, power_state, include_production))
    # maintenance is read from each selected VM's instance view whichever the source (wire §13.5)
    inv = read_fleet(ctx, make_client(ctx.connection), ("maintenance", "domains"), make_pacer(ctx.config))
    emit(maintenance_status_output(list(inv.vms), datetime.now(timezone.utc)), ctx.fmt, query)


def _maintenance_options(
    wave_by: Annotated[str, typer.Option("--wave-by", metavar="MODE", help="update-domain (default), tag:KEY or none.")] = "update-domain",
    pause: Annotated[str, typer.Option("--pause", metavar="DURATION", help="Pause between waves, e.g. 30s, 5m (Azure's own rollout pauses 30m).")] = "5m",
) -> RunExtras:
    return {"wave_by": wave_by, "pause": parse_duration(pause, "--pause")}


start_cmd = app.command("start")(action_command("maintenance start", """Start pending platform maintenance (perform-maintenance) in waves.

    Only VMs Azure allows now, inside their self-service window, get a request (no 409s). The VMs
    of one availability set go one update domain at a time; a wave must be running again (and
    pass --post-hook) before the next starts.

    Example:

        vmctl maintenance start -g rg-web --pause 10m --post-hook ./healthcheck.sh --dry-run
    """, _maintenance_options))
