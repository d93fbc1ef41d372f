"""`vmctl evidence`: the Activity Log for a run, a selection or correlation ids, every page."""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ..cloud import Event
    from ..config import Config

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
    Verbose,
    handle_errors,
)

log = logging.getLogger("vmctl.evidence")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
@handle_errors
def evidence_cmd(
    journal: Annotated[Optional[Path], typer.Option("--journal", metavar="PATH", help="A run journal: fetch the evidence of that run's operations and add it to the journal.")] = None,
    correlation_id: Annotated[list[str], typer.Option("--correlation-id", metavar="ID", help="Correlation id (repeatable).")] = [],
    since: Annotated[Optional[str], typer.Option("--since", metavar="AGE", help="Window start relative to now, e.g. 2h, 3d (default 24h).")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", metavar="WHEN", help="Window start: ISO-8601 or relative (2h).")] = None,
    to: Annotated[Optional[str], typer.Option("--to", metavar="WHEN", help="Window end: ISO-8601 or relative (default now).")] = None,
    operation: Annotated[list[str], typer.Option("--operation", metavar="OP", help="Operation: deallocate, powerOff, start, ... or a full name (repeatable).")] = [],
    caller: Annotated[list[str], typer.Option("--caller", metavar="CALLER", help="Caller (UPN or object id) (repeatable).")] = [],
    status: Annotated[list[str], typer.Option("--status", metavar="STATUS", help="Started, Accepted, Succeeded or Failed (repeatable).")] = [],
    wait: Annotated[str, typer.Option("--wait", metavar="DURATION", help="With --journal: wait this long for evidence still missing (e.g. 5m).")] = "0",
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    subscription: Subscriptions = [], cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Activity Log evidence: who did what to which VM, when, with which operation id.

    Every page is read (no truncation); filters combine: the one the service accepts is sent,
    the rest are applied by vmctl (--debug says which).

    Examples:

        vmctl evidence --journal ~/.local/state/vmctl/runs/20261122T101500Z-1a2b3c.jsonl

        vmctl evidence -g rg-web --since 2h --operation deallocate --status Failed -o markdown
    """
    from ..cloud import make_client
    from ..config import load_config
    from ..errors import InputError
    from ..evidence import SELECT, Filters, check_window, parse_when
    from ..inventory import load_inventory
    from ..preflight import check_query
    from ..render import emit
    from ..timefmt import parse_duration
    from ..views import activity_events_output
    from ._common import resolve_output
    from .actions import _sel
    from .inventory import _setup

    common = Common(subscription, cloud, arm_endpoint, config, output, query, debug)
    if journal is not None:
        if correlation_id or resource_group or name or ids or tag or exclude_tag or location or power_state:
            raise InputError("--journal takes the run's own VMs and operations; drop the selection flags.")
        cfg = load_config(config)
        fmt = resolve_output(output, cfg.output)
        check_query(query)
        _journal_evidence(journal, common, cfg, fmt, parse_duration(wait, "--wait"))
        return
    for cid in correlation_id:
        # pasted into the Activity Log's OData $filter: only a GUID may go there
        if not _GUID.fullmatch(cid.strip()):
            raise InputError(f"--correlation-id '{cid}' is not a correlation id (a GUID).",
                             "Copy it from the report or the journal, e.g. 5f0d2c1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f.")
    correlation_id = [cid.strip() for cid in correlation_id]
    now = datetime.now(timezone.utc)
    if since and from_:
        raise InputError("--since and --from both give the window's start.", "Use one of them.")
    def when(text: str, flag: str) -> datetime:
        try:
            return parse_when(text, now, flag)
        except (OverflowError, ValueError) as exc:  # 99999999999d: before the year 1
            raise InputError(f"{flag} '{text[:40]}' is out of range.",
                             "Give a time within the Activity Log's 90 days, e.g. 2h, 3d or 2026-11-22T10:00:00Z.") from exc

    start = when(since or from_ or "24h", "--since" if since else "--from")
    end = when(to, "--to") if to else now
    check_window(start, end, now)
    statuses = [s.capitalize() for s in status]
    for s in statuses:
        if s not in ("Started", "Accepted", "Succeeded", "Failed"):
            raise InputError(f"--status '{s}' is not an Activity Log status.", "Use Started, Accepted, Succeeded or Failed.")
    selection = any([resource_group, name, ids, tag, exclude_tag, location, power_state])
    ctx = _setup(common, **_sel(
        resource_group, name, ids, tag, exclude_tag, location, power_state, include_production=True))
    cfg, fmt, selector, subs, connection = ctx.config, ctx.fmt, ctx.selector, ctx.subscriptions, ctx.connection
    client = make_client(connection)
    resource_ids: set[str] = set()
    groups: set[str] = set()
    if selection:
        only_groups = bool(resource_group) and not any([name, ids, tag, exclude_tag, location, power_state])
        if only_groups:
            groups = set(resource_group)   # every resource in the group, not only today's VMs
        else:
            from .actions import make_pacer

            inv = load_inventory(client, subs, selector, cfg, pacer=make_pacer(cfg))
            resource_ids = {vm.id for vm in inv.vms}
            if not resource_ids:
                raise InputError("The selection matches no VM, so there is no evidence to look for.")
    ops = [o if "/" in o else f"Microsoft.Compute/virtualMachines/{o}/action" for o in operation]
    f = Filters(start, end, correlation_ids=set(correlation_id), resource_ids=resource_ids, resource_groups=groups,
                operations=set(ops), callers=set(caller), statuses=set(statuses))
    flt, scope = f.server_side()
    sent = {"correlationId": "correlationId", "resourceUri": "resourceId", "resourceGroupName": "resourceGroupName"}
    client_side = [c for c in f.client_side() if c != sent.get(scope)]
    log.info("server-side $filter (%s): %s", scope, flt)
    log.info("applied by vmctl on every page: %s", ", ".join(client_side) or "nothing")
    if debug:
        print(f"debug: server-side filter ({scope}): {flt}", file=sys.stderr)
        print(f"debug: client-side filters: {', '.join(client_side) or 'none'}", file=sys.stderr)
    events: list[Event] = []
    fetched = 0
    for sub in subs:
        page_events = client.activity_events(sub, flt, SELECT)
        fetched += len(page_events)
        events += [e for e in page_events if f.matches(e)]
    events.sort(key=lambda e: (str(e.get("eventTimestamp")), str(e.get("eventDataId"))))
    emit(activity_events_output(events, fetched, start, end, flt, client_side), fmt, query)


def _journal_evidence(path: Path, common: Common, cfg: Config, fmt: str, wait: float) -> None:
    """Fetch what a run's report is missing, append it to the journal, show the run's evidence."""
    from .. import journal as jr
    from ..cloud import make_client
    from ..evidence import collect, collected, expected_operations, record
    from ..journal import iter_type
    from ..planner import plan_from_json
    from ..preflight import check_writable
    from ..render import emit
    from ..report import build
    from ..views import run_evidence_output
    from ._common import connection_for

    records = jr.read(path)
    check_writable(path, "--journal")  # the evidence is appended to it: refuse now, not after the reads
    plan = plan_from_json(next(iter_type(records, "plan"))["plan"])
    from ..config import pace_scale

    scale = pace_scale(cfg)
    expected = expected_operations(records, {s.index: s.vm.subscription_id for s in plan.steps})
    client = make_client(connection_for(common, cfg))
    found = collect(client, expected, wait=wait, have=collected(records),
                    scale=scale)
    j = jr.Journal(path, append=True)
    try:
        missing = record(j, expected, found)
    finally:
        j.close()
    rep = build(records + j.records)  # what was read, and what was just appended
    emit(run_evidence_output(rep, len(expected), missing, str(path)), fmt, common.query)
