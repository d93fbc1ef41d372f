"""What each command shows, as data: JSON-able dicts and table rows. Pure (no printing)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypedDict

from .models import FAILED_OUTCOMES, Coverage, Maintenance, Plan, Vm
from .render import Col, LazyItems, Output, Section
from .timefmt import iso, local, relative, utc

if TYPE_CHECKING:
    from .cloud import Event, InstanceViewJson, StatusJson
    from .inventory import FleetSummary, Inventory
    from .report import Report, ReportVm
    from .resume import Assessment, Verdict

class SetPending(TypedDict):
    availabilitySet: str
    resourceGroup: str
    pending: int
    canStartNow: int


POWER_LABEL = {
    "stopped": "stopped (still billed)",
    "deallocated": "deallocated",
}


def power_label(vm: Vm) -> str:
    label = POWER_LABEL.get(vm.power_state, vm.power_state)
    if vm.hibernated and vm.power_state == "deallocated":
        label = "deallocated (hibernated)"
    return label


def placement(vm: Vm) -> str:
    if vm.availability_set:
        ud = f" UD{vm.update_domain}" if vm.update_domain is not None else ""
        fd = f"{'/' if ud else ' '}FD{vm.fault_domain}" if vm.fault_domain is not None else ""
        return f"{vm.availability_set.lower()}{ud}{fd}"
    if vm.zones:
        return "zone " + ",".join(vm.zones)
    return "-"


def maintenance_summary(m: Maintenance | None, now: datetime, known: bool = True) -> str:
    if m is None:
        return "-" if known else "?"
    if m.can_start_now(now):
        end = f", self-service closes {relative(m.self_service_end, now)}" if m.self_service_end else ""
        return f"can start now{end}"
    if m.self_service_start and now < m.self_service_start:
        return f"self-service opens {relative(m.self_service_start, now)}"
    if m.self_service_end and now > m.self_service_end:
        sched = f"; Azure's window {relative(m.scheduled_start, now)}" if m.scheduled_start and m.scheduled_start > now else ""
        return f"self-service closed {relative(m.self_service_end, now)}{sched}"
    if m.last_result and m.last_result != "None":
        return f"last result {m.last_result}"
    return "pending, not allowed"


def maintenance_json(m: Maintenance | None, now: datetime) -> dict[str, object] | None:
    if m is None:
        return None
    return {
        "allowed": m.allowed, "canStartNow": m.can_start_now(now),
        "selfServiceWindow": {"start": iso(m.self_service_start), "end": iso(m.self_service_end)},
        "scheduledWindow": {"start": iso(m.scheduled_start), "end": iso(m.scheduled_end)},
        "lastOperationResultCode": m.last_result, "lastOperationMessage": m.last_message,
    }


def vm_json(vm: Vm, now: datetime) -> dict[str, object]:
    return {
        "id": vm.id, "name": vm.name, "resourceGroup": vm.resource_group,
        "subscriptionId": vm.subscription_id, "subscriptionName": vm.subscription_name,
        "location": vm.location, "size": vm.size, "powerState": vm.power_state,
        "stoppedButBilled": vm.stopped_but_billed, "hibernated": vm.hibernated,
        "provisioningState": vm.provisioning_state, "availabilitySet": vm.availability_set,
        "updateDomain": vm.update_domain, "faultDomain": vm.fault_domain, "zones": list(vm.zones),
        "maintenance": maintenance_json(vm.maintenance, now), "production": vm.production,
        "flags": list(vm.flags), "tags": dict(vm.tags),
        "maintenanceKnown": vm.maintenance_known, "unreadable": vm.unreadable or None,
    }


LIST_COLUMNS = ["SUBSCRIPTION", "GROUP", "NAME", "LOCATION", "SIZE", "POWER", "PROVISIONING", "PLACEMENT",
                "MAINTENANCE", "PROD", "FLAGS"]
# How each table gives way on a narrow terminal (render/table.py): the key columns identify a row
# and are never left out; the others go in their `drop` order. SUBSCRIPTION, POWER, PROD, ACTION,
# OUTCOME and REASON are never left out (a subscription shared by every row is said once above).
LIST_LAYOUT = {"GROUP": Col(key=True), "NAME": Col(key=True), "PROVISIONING": Col(drop=1), "LOCATION": Col(drop=2),
               "FLAGS": Col(drop=3), "SIZE": Col(drop=4), "PLACEMENT": Col(drop=5), "MAINTENANCE": Col(drop=6)}
PLAN_LAYOUT = {"#": Col(key=True), "GROUP": Col(key=True), "NAME": Col(key=True), "POWER": Col(drop=2),
               "PLACEMENT": Col(drop=1), "ACTION": Col(note=False), "FACTS": Col(drop=3)}
REPORT_LAYOUT = {"GROUP": Col(key=True), "NAME": Col(key=True), "ACTION": Col(note=False), "RETRIES": Col(drop=1),
                 "BEFORE": Col(drop=2),
                 "DURATION": Col(drop=3), "CORRELATION ID": Col(short="id", drop=4), "WAVE": Col(drop=5)}
EVIDENCE_LAYOUT = {"GROUP": Col(key=True), "NAME": Col(key=True), "SUBMITTED (END)": Col(short="time", drop=1),
                   "OPERATION ID": Col(short="id", drop=2), "EVENT TIME (END)": Col(short="time"),
                   "CALLER": Col(drop=3)}
ACTIVITY_LAYOUT = {"EVENT TIME": Col(short="time", key=True), "RESOURCE GROUP": Col(key=True), "RESOURCE": Col(key=True),
                   "SUBMITTED": Col(short="time", drop=1), "OPERATION ID": Col(short="id", drop=2),
                   "CORRELATION ID": Col(short="id", drop=3), "CALLER": Col(drop=4)}
MAINTENANCE_LAYOUT = {"GROUP": Col(key=True), "NAME": Col(key=True), "PLACEMENT": Col(drop=1),
                      "LAST RESULT": Col(drop=2)}


def list_row(vm: Vm, now: datetime, show_tags: list[str]) -> list[str]:
    row = [vm.subscription_name or vm.subscription_id, vm.resource_group, vm.name, vm.location, vm.size,
           power_label(vm), vm.provisioning_state, placement(vm), maintenance_summary(vm.maintenance, now, vm.maintenance_known),
           "PROD" if vm.production else "", ",".join(vm.flags)]
    row += [vm.tag(t) or "" for t in show_tags]
    return row


def list_footer(summary: FleetSummary) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in summary["byPowerState"].items()) or "none"
    lines = [f"{summary['total']} VMs: {states}; {summary['production']} production (marked PROD)."]
    if summary["stoppedButBilled"]:
        lines.append(f"{summary['stoppedButBilled']} stopped but still billed for compute: deallocate them to stop paying.")
    if summary.get("maintenanceNotRead"):
        source = "Azure Resource Graph does" if summary.get("source") == "graph" else "Azure's status listing did"
        lines.append(f"MAINTENANCE ?: {source} not carry it for {summary['maintenanceNotRead']} VMs; "
                     "`vmctl maintenance status` reads it (one request per VM).")
    if summary.get("unreadable"):
        lines.append(f"{summary['unreadable']} VMs could not be read (tags and properties unknown): counted as production.")
    return lines


def window_state(start: datetime, end: datetime, now: datetime) -> str:
    """'opens in 2 days' / 'open now, closes in 5 hours' / 'closed 3 hours ago'."""
    if now < start:
        return f"opens {relative(start, now)}"
    if now <= end:
        return f"open now, closes {relative(end, now)}"
    return f"closed {relative(end, now)}"


def describe_window(label: str, start: datetime | None, end: datetime | None, now: datetime) -> str:
    if not start or not end:
        return f"{label}: none announced"
    return f"{label}: {utc(start)} to {utc(end)} ({local(start)} to {local(end)} local); {window_state(start, end, now)}"


def explain_maintenance(m: Maintenance | None, now: datetime) -> list[str]:
    if m is None:
        return ["No platform maintenance is pending for this VM."]
    lines = []
    if m.can_start_now(now):
        lines.append("Maintenance can be started now (vmctl maintenance start, or perform-maintenance).")
    elif not m.allowed:
        lines.append("Maintenance is pending but cannot be started by you now (isCustomerInitiatedMaintenanceAllowed is false).")
    else:
        lines.append("Maintenance is allowed, but the self-service window is not open now.")
    lines.append(describe_window("Self-service window", m.self_service_start, m.self_service_end, now))
    lines.append(describe_window("Scheduled window (Azure does it)", m.scheduled_start, m.scheduled_end, now))
    if m.last_result and m.last_result != "None":
        msg = f": {m.last_message}" if m.last_message else ""
        lines.append(f"Last maintenance result: {m.last_result}{msg}")
    else:
        lines.append("Last maintenance result: none yet")
    return lines


def _status_line(s: StatusJson) -> str:
    when = f" at {s['time']}" if s.get("time") else ""
    msg = f": {s['message']}" if s.get("message") else ""
    return f"{s.get('displayStatus') or s.get('code')} [{s.get('code')}, {s.get('level', 'Info')}]{when}{msg}"


def show_sections(vm: Vm, view: InstanceViewJson, now: datetime) -> list[Section]:
    """Readable sections of one VM's instance view, for `vmctl show`."""
    from .render import Section

    title = f"{vm.subscription_name or vm.subscription_id} / {vm.resource_group} / {vm.name}"
    overview = [
        f"Power: {power_label(vm)}; provisioning: {vm.provisioning_state}",
        f"Size: {vm.size}; location: {vm.location}; OS: {view.get('osName', vm.os_type)} {view.get('osVersion', '')}".rstrip(),
        f"Placement: {placement(vm)}"
        + (f" (update domain {view['platformUpdateDomain']}, fault domain {view['platformFaultDomain']})"
           if "platformUpdateDomain" in view else ""),
        f"Production: {'yes (excluded from actions unless --include-production)' if vm.production else 'no'}",
        f"Flags: {', '.join(vm.flags) or 'none'}",
        f"Tags: {', '.join(f'{k}={v}' for k, v in sorted(vm.tags.items())) or 'none'}",
        f"ID: {vm.id}",
    ]
    sections = [Section(title, overview), Section("Statuses", [_status_line(s) for s in view.get("statuses") or []])]
    agent = view.get("vmAgent")
    if agent:
        lines = [f"Version {agent.get('vmAgentVersion', '?')}"] + [_status_line(s) for s in agent.get("statuses") or []]
    else:
        lines = ["No agent status (the VM is not running, or the agent is not reporting)."]
    sections.append(Section("VM agent", lines))
    sections.append(Section("Maintenance", explain_maintenance(vm.maintenance, now)))
    disks = view.get("disks") or []
    sections.append(Section("Disks", columns=["DISK", "STATUS"], rows=[
        [d.get("name", ""), "; ".join(s.get("displayStatus", s.get("code", "")) for s in d.get("statuses") or [])]
        for d in disks]) if disks else Section("Disks", ["No disk status reported."]))
    exts = view.get("extensions") or []
    sections.append(Section("Extensions", columns=["EXTENSION", "TYPE", "STATUS"], rows=[
        [e.get("name", ""), e.get("type", ""),
         "; ".join(s.get("displayStatus", s.get("code", "")) for s in e.get("statuses") or [])]
        for e in exts]) if exts else Section("Extensions", ["None."]))
    return sections


# ---------------------------------------------------------------- the plan
def plan_output(plan: Plan) -> Output:
    from .planner import plan_json

    maint = plan.action == "performMaintenance"
    graph = plan.source == "graph"
    rows = []
    for s in plan.steps:
        action = ((s.path if s.path.startswith(s.action or "") else f"{s.action} ({s.path})") if s.path
                  else s.action) if s.acts else f"skip: {s.skip}"
        row = [str(s.index + 1), s.vm.subscription_name or s.vm.subscription_id, s.vm.resource_group, s.vm.name,
               power_label(s.vm), "PROD" if s.vm.production else "", action, s.detail]
        if maint:
            row[4:4] = [placement(s.vm), str(s.wave + 1) if s.wave is not None else "-"]
        if graph:
            row.insert(len(row) - 2, s.source + (" (changed)" if s.recheck else ""))
        rows.append(row)
    sm = plan.summary()
    acts = ", ".join(f"{n} {a}" for a, n in sm["actions"].items()) or "nothing to do"
    skips = ", ".join(f"{n} {k}" for k, n in sm["skipped"].items())
    footer = [f"Plan {plan.run_id}: {acts}" + (f"; skipped: {skips}" if skips else "") + "."]
    from .batch import chunk_lines

    footer += chunk_lines(plan)
    if sm["leftStoppedButBilled"]:
        footer.append(f"{sm['leftStoppedButBilled']} VMs will be left stopped but still billed for compute.")
    if plan.options.skip_shutdown and sm["acting"]:
        footer.append("--skip-shutdown: HARD POWER-OFF without guest shutdown (emergency containment only).")
    if maint:
        footer += wave_lines(plan)
        if sm["acting"]:
            footer.append("Azure's guidance: maintenance redeploys the VM, so temporary-disk data is lost; a VM "
                          "deallocated or resized after the notice can lose (or re-gain) its maintenance status.")
    if graph:
        footer += fact_lines(plan)
    for r in plan.refusals:
        footer.append(f"REFUSED: {r}.")
    styles = ["prod" if (s.acts and plan.options.skip_shutdown) or (s.acts and s.vm.production) else
              "" if s.acts else "dim" for s in plan.steps]
    columns = ["#", "SUBSCRIPTION", "GROUP", "NAME", "POWER", "PROD", "ACTION", "CONSEQUENCE / REASON"]
    if maint:
        columns[4:4] = ["PLACEMENT", "WAVE"]
    if graph:
        columns.insert(len(columns) - 2, "FACTS")
    return Output(kind="plan", data=plan_json(plan), summary=sm, columns=columns,
                  rows=[[cell or "" for cell in row] for row in rows], footer=footer, row_styles=styles,
                  layout=PLAN_LAYOUT, recap=prompt_recap(plan))


def fact_lines(plan: Plan, most: int = 10) -> list[str]:
    """A plan from Resource Graph: where its facts came from, and what the ARM re-check changed."""
    out = coverage_lines(plan.coverage) if plan.coverage is not None else []
    out += [f"WARNING: {w}." for w in (coverage_warnings(plan.coverage) if plan.coverage is not None else [])]
    arm = [s for s in plan.steps if s.source == "arm"]
    subs = {s.vm.subscription_id for s in arm}
    out.append(f"FACTS: every step that acts was re-read through ARM just now ({len(arm)} VMs in {len(subs)} "
               f"subscription(s), source arm); {len(plan.steps) - len(arm)} steps rest on Resource Graph alone "
               "(source graph) and none of them acts.")
    changed = [s for s in plan.steps if s.recheck]
    for s in changed[:most]:
        out.append(f"ARM re-check, {s.vm.resource_group}/{s.vm.name}: {s.recheck} -> "
                   f"{s.action if s.acts else 'skip: ' + str(s.skip)}.")
    if len(changed) > most:
        out.append(f"ARM re-check: {len(changed) - most} more steps changed (the plan's JSON has each step's `recheck`).")
    return out


BILLING = {"powerOff": "left stopped and STILL BILLED for compute", "deallocate": "no longer billed for compute",
           "hibernate": "hibernated, no longer billed for compute", "start": "billed for compute again",
           "restart": "still billed (compute stays allocated)",
           "performMaintenance": "still billed (redeployed, compute stays allocated)"}


def prompt_recap(plan: Plan) -> list[str]:
    """What a long plan comes to, in three lines, for right above the confirmation prompt: the
    counts, which subscriptions and groups, production, and what happens to the bill."""
    sm = plan.summary()
    acting = plan.acting
    where: dict[str, dict[str, int]] = {}
    for s in acting:
        groups = where.setdefault(s.vm.subscription_name or s.vm.subscription_id, {})
        groups[s.vm.resource_group] = groups.get(s.vm.resource_group, 0) + 1
    places = "; ".join(f"{sub}: " + ", ".join(f"{g} {n}" for g, n in sorted(gs.items()))
                       for sub, gs in sorted(where.items()))
    what = ", ".join(f"{a} {n}" for a, n in sm["actions"].items())
    skipped = len(plan.steps) - len(acting)
    lines = [f"Plan {plan.run_id}: {what} of {len(plan.steps)} VMs"
             + (f" ({skipped} skipped)" if skipped else "") + f", in {places}."]
    prod = plan.production_acting
    lines.append(f"Production: {len(prod)} VMs ({', '.join(s.vm.name for s in prod[:5])}"
                 f"{', ...' if len(prod) > 5 else ''})." if prod else "Production: none.")
    billing: dict[str, int] = {}
    for a, n in sm["actions"].items():
        billing[BILLING.get(a, a)] = billing.get(BILLING.get(a, a), 0) + n
    lines.append("After the run: " + "; ".join(f"{n} {text}" for text, n in billing.items()) + "."
                 + (" HARD POWER-OFF, no guest shutdown (--skip-shutdown)." if plan.options.skip_shutdown else ""))
    return lines


def wave_lines(plan: Plan) -> list[str]:
    """Each wave and, per availability set, the share of its VMs out of service in it."""
    from .inventory import set_key

    lines = []
    for n, members in enumerate(plan.waves):
        shares: dict[str, int] = {}
        for s in members:
            if s.vm.availability_set:
                key = set_key(s.vm)
                shares[key] = shares.get(key, 0) + 1
        parts = [f"{k.rsplit('/', 1)[-1]} {c}/{plan.set_sizes.get(k, c)} ({100 * c // max(1, plan.set_sizes.get(k, c))}%)"
                 for k, c in sorted(shares.items())]
        lines.append(f"Wave {n + 1}: {len(members)} VM{'s' if len(members) != 1 else ''}" + (f"; out of service per availability set: {', '.join(parts)}"
                                                            if parts else ""))
    if len(plan.waves) > 1:
        lines.append(f"Pause between waves: {plan.options.pause:g} s; each wave must be running again (and pass "
                     "--post-hook) before the next starts.")
    return lines


# ---------------------------------------------------------------- maintenance status
def urgency(vm: Vm, now: datetime) -> tuple[int, float]:
    """Most urgent first: startable VMs by their self-service window's end; the others by the next
    moment something happens to them (their self-service window opens, or Azure's window starts)."""
    m = vm.maintenance
    assert m is not None
    far = datetime.max.replace(tzinfo=timezone.utc).timestamp()
    if m.can_start_now(now):
        return (0, m.self_service_end.timestamp() if m.self_service_end else far)
    moments = [t.timestamp() for t in (m.self_service_start, m.scheduled_start) if t and t > now]
    return (1, min(moments) if moments else far)


def maintenance_status_output(vms: list[Vm], now: datetime) -> Output:
    """`vmctl maintenance status`: the VMs with pending maintenance, most urgent first."""
    from .inventory import set_key

    pending = sorted((vm for vm in vms if vm.maintenance is not None), key=lambda v: urgency(v, now))

    def window(start: datetime | None, end: datetime | None) -> str:
        if not start or not end:
            return "-"
        return f"{utc(start)} - {utc(end)} ({local(start)} local); {window_state(start, end, now)}"

    rows: list[list[str]] = []
    data: list[dict[str, object]] = []
    per_set: dict[str, SetPending] = {}
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
    unread = [vm for vm in vms if not vm.maintenance_known]
    summary = {"pending": len(pending), "canStartNow": startable, "byAzureInItsWindow": len(pending) - startable,
               "availabilitySets": list(per_set.values()), "notRead": [vm.id for vm in unread]}
    footer = [f"{len(pending)} VMs with pending maintenance: {startable} can be started now (vmctl maintenance start); "
              f"{len(pending) - startable} will be done by Azure in its scheduled window unless started when allowed."]
    footer += [f"  {e['resourceGroup']}/{e['availabilitySet']}: {e['pending']} pending, {e['canStartNow']} can start now"
               for e in per_set.values()]
    if unread:
        footer.append(f"WARNING: the maintenance status of {len(unread)} VMs could not be read "
                      f"({', '.join(vm.name for vm in unread[:5])}{', ...' if len(unread) > 5 else ''}); run again.")
    return Output(kind="maintenance-status", data=data, summary=summary,
                columns=["SUBSCRIPTION", "GROUP", "NAME", "START NOW", "SELF-SERVICE WINDOW", "SCHEDULED WINDOW (AZURE)",
                         "LAST RESULT", "PLACEMENT", "PROD"],
                rows=rows, footer=footer, layout=MAINTENANCE_LAYOUT,
                row_styles=["ok" if r[3] == "yes" else "dim" for r in rows])


# ---------------------------------------------------------------- vmctl list
def vm_list_output(inv: Inventory, subscriptions: list[str], tag_columns: list[str], now: datetime) -> Output:
    from .inventory import summarize

    summary = summarize(inv.vms)
    summary["subscriptions"] = [{"id": s, "name": inv.subscriptions[s], "vmCount": inv.totals[s]}
                                for s in subscriptions]
    summary["source"] = inv.source
    footer = list_footer(summary)
    if inv.coverage is not None:
        summary["coverage"] = inv.coverage.as_json()
        footer += coverage_lines(inv.coverage) + [f"WARNING: {w}." for w in coverage_warnings(inv.coverage)]
    def rows() -> tuple[list[list[str]], list[str]]:
        return ([list_row(vm, now, tag_columns) for vm in inv.vms],
                ["prod" if vm.production else "stopped" if vm.stopped_but_billed else
                 "dim" if vm.power_state == "deallocated" else "" for vm in inv.vms])

    return Output(
        kind="vm-list", data=LazyItems(inv.vms, lambda vm: vm_json(vm, now)), summary=summary,
        columns=LIST_COLUMNS + [f"TAG:{t}" for t in tag_columns], build_rows=rows,
        footer=footer, layout=LIST_LAYOUT,
    )


def coverage_lines(cov: Coverage) -> list[str]:
    """What a Resource Graph inventory covered, in a sentence (table footers)."""
    where = (f"management group {cov.management_group}" if cov.scope == "managementGroup" else
             "every subscription this identity can read" if cov.scope == "tenant" else "the subscriptions asked for")
    asked = f" of {len(cov.asked)} asked" if cov.asked is not None else ""
    return [f"Source: Azure Resource Graph over {where} (a snapshot up to {cov.max_age_seconds} s old): "
            f"{len(cov.with_vms)} subscription(s){asked} returned VMs, {len(cov.without_vms)} have none; "
            f"{cov.queries} {'query' if cov.queries == 1 else 'queries'}"
            + (f", {cov.throttled} throttled and waited out" if cov.throttled else "") + "."]


def coverage_warnings(cov: Coverage) -> list[str]:
    """What the operator must not miss: subscriptions asked for that were not covered."""
    out = []
    if cov.unreadable:
        out.append(f"{len(cov.unreadable)} subscription(s) asked for cannot be read by this identity, so their VMs "
                   f"are not included: {', '.join(cov.unreadable)} (absent from GET /subscriptions; Azure Resource "
                   "Graph drops them without a word)")
    if cov.tenant_limit_hit:
        out.append("Azure Resource Graph covered only the first 10,000 subscriptions of the scope "
                   "(x-ms-tenant-subscription-limit-hit): VMs in the others are not included; name the "
                   "subscriptions with --subscription instead")
    return out


# ---------------------------------------------------------------- the run report (data from report.build)
EVIDENCE_COLUMNS = ["SUBSCRIPTION", "GROUP", "NAME", "OPERATION", "STATUSES", "CALLER", "EVENT TIME (END)", "SUBMITTED (END)", "OPERATION ID"]


GUEST_COLUMNS = ["GROUP", "NAME", "EVENT", "DRAIN", "APPROVED", "SAVED VS NOTBEFORE", "RECOVERED"]
GUEST_LAYOUT = {"GROUP": Col(key=True), "NAME": Col(key=True), "RECOVERED": Col(drop=1)}


def _minutes(seconds: float) -> str:
    """14m 32s, 45s: a span an operator reads at a glance."""
    whole = int(round(seconds))
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{seconds:.1f}s"


def guest_rows(rep: Report) -> list[list[str]]:
    """One row per VM: what its watcher did (vmctl report --guest-journal)."""
    rows = []
    for v in rep["vms"]:
        g = v.get("guest")
        if g is None:
            rows.append([v["resourceGroup"], v["name"], "no guest record", "-", "-", "-", "-"])
            continue
        if g["kind"] == "shutdown":
            event = "shutdown (systemd)"
        else:
            event = f"{g['eventType']} ({g['eventSource']})" + (" ignored" if g["kind"] == "ignored" else "")
        # a reason may carry the hook's output after ": " (the JSON has it whole)
        drain = (f"ok {g['drainSeconds']:.1f}s" if g["drained"] and g["drainSeconds"] is not None else
                 "ok" if g["drained"] else f"failed: {g['drainReason'].split(': ')[0]}" if g["drainReason"] else "no")
        approved = ("yes" if g["approved"] else "no: the drain did not succeed" if not g["drained"] and
                    g["kind"] == "event" else f"no: {g['approvalReason']}" if g["approvalReason"] else "no")
        saved = _minutes(g["secondsSaved"]) if g["secondsSaved"] is not None else "-"
        if g["operationEndedBeforeNotBefore"] is not None:
            ended = g["operationEndedBeforeNotBefore"]
            saved += f" (done {_minutes(ended)} before)" if ended > 0 else f" (done {_minutes(-ended)} after)"
        recovered = "-" if g["recovered"] is None else "yes" if g["recovered"] else "failed"
        rows.append([v["resourceGroup"], v["name"], event, drain, approved, saved, recovered])
    return rows


def guest_footer(rep: Report) -> str:
    stories = [g for v in rep["vms"] if (g := v.get("guest")) is not None]
    drained = sum(1 for g in stories if g["drained"])
    approved = [g for g in stories if g["approved"]]
    saved = sum(g["secondsSaved"] or 0.0 for g in approved)
    return (f"Guest side: {len(stories)} of {len(rep['vms'])} VMs have a guest record; {drained} drained, "
            f"{len(approved)} approved early" + (f", {_minutes(saved)} ahead of NotBefore in all." if approved else "."))


def evidence_rows(rep: Report, journal: str | None = None) -> list[list[str]]:
    rows = []
    where = journal or "<the run's journal>"
    for v in rep["vms"]:
        ev = v.get("evidence")
        if ev is None:
            continue
        who = [v["subscriptionName"] or v["subscriptionId"], v["resourceGroup"], v["name"]]
        if ev.get("missing") or not ev.get("statuses"):
            rows.append([*who, "-", "MISSING: not in the Activity Log yet", "-", "-", "-",
                         f"vmctl evidence --journal {where} fetches it (correlation id {ev['correlationId']})"])
            continue
        end = ev["statuses"][-1]
        statuses = " > ".join(ev["statuses"]) + ("" if ev["complete"] else " (no end event yet)")
        rows.append([*who, str(ev.get("operationName", "")).replace("Microsoft.Compute/virtualMachines/", ""),
                     statuses, str(ev.get("caller") or "-"), str(ev["eventTimestamps"].get(end, "-")),
                     str(ev["submissionTimestamps"].get(end, "-")), str(ev.get("operationId") or "-")])
    return rows


REPORT_COLUMNS = ["SUBSCRIPTION", "GROUP", "NAME", "BEFORE", "ACTION", "AFTER", "DURATION", "RETRIES",
                  "CORRELATION ID", "OUTCOME", "REASON"]


def _action_label(v: ReportVm) -> str:
    if v["action"] is None:
        return f"skip: {v['skip']}"
    if v["path"]:  # "deallocate (fallback)" already names the action; "hibernate" does not
        return v["path"] if v["path"].startswith(str(v["action"])) else f"{v['action']} ({v['path']})"
    return str(v["action"])


def confirmed_text(how: str | None) -> str:
    from .report import CONFIRMED_BY

    if not how:
        return "not recorded in the journal"
    return CONFIRMED_BY.get(how, how)


def history_lines(rep: Report) -> list[str]:
    """When the run was interrupted and resumed, and by whom, in order."""
    events: list[tuple[str, str]] = []
    for i in rep.get("interruptions") or []:
        events.append((i["at"], f"interrupted at {i['at']}" + (" (in-flight operations abandoned)" if i["abandoned"] else "")))
    for r in rep.get("resumes") or []:
        who = f" by {r['user']}@{r['host']}" if r.get("user") else ""
        how = f", confirmed by {confirmed_text(r['confirmedBy'])}" if r.get("confirmedBy") else ""
        events.append((r["at"], f"resumed at {r['at']}{who}{how}"))
    if not events:
        return []
    n_int, n_res = len(rep.get("interruptions") or []), len(rep.get("resumes") or [])
    head = f"Interrupted {n_int} time{'s' if n_int != 1 else ''}, resumed {n_res} time{'s' if n_res != 1 else ''}: "
    return [head + "; ".join(text for _, text in sorted(events)) + "."]


def report_output(rep: Report, journal: str | None = None) -> Output:
    """The report; `journal` (the run's journal path) goes into the hints on what to run next."""
    where = journal or "<the run's journal>"
    rows = [[v["subscriptionName"] or v["subscriptionId"], v["resourceGroup"], v["name"], v["before"],
             _action_label(v), v["after"] or "-", f"{v['duration']:.1f}s" if v["duration"] is not None else "-",
             str(v["retries"]), v["correlationId"] or "-", v["outcome"], v["reason"] or ""] for v in rep["vms"]]
    columns = list(REPORT_COLUMNS)
    if rep["action"] == "performMaintenance":
        columns[4:4] = ["WAVE"]
        columns[-1:-1] = ["MAINTENANCE RESULT"]
        for row, v in zip(rows, rep["vms"]):
            row[4:4] = [str(v["wave"]) if v["wave"] else "-"]
            row[-1:-1] = [v["maintenanceResult"] or "-"]
    s = rep["summary"]
    who = (rep.get("principal") or {}).get("name", "unknown")
    meta = [
        f"Run {rep['runId']}: vmctl {rep['verb']} ({rep['action']})" + (f", ticket {rep['ticket']}" if rep["ticket"] else ""),
        f"Ran as {who}, from {rep.get('user')}@{rep.get('host')}, started {rep['startedAt']}, ended {rep['endedAt'] or '-'}",
        f"Command: {rep['command']}",
        f"Confirmed by: {confirmed_text(rep.get('confirmedBy'))}",
    ]
    if rep.get("engine") == "batch":
        meta.append("Engine: batch (ComputeSchedule): CORRELATION ID is the chunk's request; each VM's operationId "
                    "is in the JSON report and the journal")
    meta += history_lines(rep)
    footer = [
        f"{s['succeeded']} succeeded, {s['failed']} failed, "
        + (f"{s['preempted']} preempted (another request superseded vmctl's), " if s.get("preempted") else "")
        + (f"{s['unknown']} unknown (sent, result not known: `vmctl resume` re-checks), " if s.get("unknown") else "")
        + f"{s['skipped']} skipped, {s['cancelled']} cancelled, "
        f"{s['in-flight']} in flight" + (f", {s['pending']} not started" if s["pending"] else "") + f"; exit code {rep['exitCode']}.",
    ]
    if s["leftStoppedButBilled"]:
        footer.append(f"{s['leftStoppedButBilled']} VMs are left stopped but still billed for compute.")
    if rep["skipShutdown"]:
        footer.append("--skip-shutdown was used: VMs were powered off without a guest shutdown.")
    for w in rep.get("wavesStopped") or []:
        footer.append(f"Stopped after wave {w['wave']}: {w['reason']}; waves not started: "
                      f"{', '.join(str(n) for n in w['notStarted']) or 'none'}.")
    if rep["interrupted"]:
        footer.append(f"The run was interrupted; `vmctl resume {where}` continues it.")
    for warning in rep.get("warnings") or []:
        footer.append(f"WARNING: {warning[0].upper()}{warning[1:]}.")
    sections = [Section("Run", meta)]
    ev_rows = evidence_rows(rep, journal)
    if ev_rows:
        title = "Activity Log evidence" + ("" if rep.get("evidenceCollected") else
                                           f" (not collected yet: vmctl evidence --journal {where})")
        missing = sum(1 for r in ev_rows if r[EVIDENCE_COLUMNS.index("STATUSES")].startswith("MISSING"))
        if missing:
            footer.append(f"{missing} operations have no Activity Log evidence yet; "
                          f"`vmctl evidence --journal {where}` fetches it later.")
        sections.append(Section(title, columns=EVIDENCE_COLUMNS, rows=ev_rows, layout=EVIDENCE_LAYOUT))
    if rep.get("guestJournals"):
        sections.append(Section(f"Guest side (from {len(rep['guestJournals'])} guest journals)",
                                columns=GUEST_COLUMNS, rows=guest_rows(rep), layout=GUEST_LAYOUT))
        footer.append(guest_footer(rep))
    return Output(kind="run-report", data=rep, summary=s, sections=sections, columns=columns,
                  rows=rows, footer=footer, layout=REPORT_LAYOUT,
                  row_styles=["failed" if v["outcome"] in FAILED_OUTCOMES else "ok" if v["outcome"] == "succeeded" else ""
                              for v in rep["vms"]])


def report_markdown(rep: Report, journal: str | None = None) -> str:
    from .render import markdown as md
    from .render import md_escape

    out = report_output(rep, journal)
    meta = "\n".join(f"- {md_escape(line)}" for line in out.sections[0].lines)
    out.sections = out.sections[1:]
    title = f"## vmctl {rep['verb']}: run {rep['runId']}" + (f" ({md_escape(rep['ticket'])})" if rep["ticket"] else "")
    return f"{title}\n\n{meta}\n\n" + md(out)


# ---------------------------------------------------------------- vmctl evidence
ACTIVITY_COLUMNS = ["EVENT TIME", "STATUS", "OPERATION", "RESOURCE GROUP", "RESOURCE", "CALLER", "CORRELATION ID", "OPERATION ID",
           "SUBMITTED"]


def activity_rows(events: list[Event]) -> list[list[str]]:
    return [[str(e.get("eventTimestamp")), str(e.get("status")),
             str(e.get("operationName", "")).replace("Microsoft.Compute/virtualMachines/", ""),
             str(e.get("resourceGroupName") or ""), str(e.get("resourceId") or "").rsplit("/", 1)[-1],
             str(e.get("caller") or ""), str(e.get("correlationId") or ""), str(e.get("operationId") or ""),
             str(e.get("submissionTimestamp"))] for e in events]


def activity_events_output(events: list[Event], fetched: int, start: datetime, end: datetime,
                           server_filter: str, client_side: list[str]) -> Output:
    summary = {"events": len(events), "fetched": fetched, "window": {"from": start.isoformat(), "to": end.isoformat()},
               "serverSideFilter": server_filter, "clientSideFilters": client_side}
    footer = [f"{len(events)} events ({fetched} read from the Activity Log, every page) between "
              f"{start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC."]
    return Output(kind="activity-events", data=events, summary=summary, columns=ACTIVITY_COLUMNS,
                  rows=activity_rows(events), footer=footer, layout=ACTIVITY_LAYOUT)


def run_evidence_output(rep: Report, expected: int, missing: list[str], journal: str | None = None) -> Output:
    data = [{"name": v["name"], "id": v["id"], "resourceGroup": v["resourceGroup"], "subscriptionId": v["subscriptionId"],
             **(v["evidence"] or {})} for v in rep["vms"] if v["evidence"]]
    footer = [f"{expected - len(missing)} of {expected} operations have their end event in the Activity Log"
              + (f"; {len(missing)} still missing." if missing else ".")]
    return Output(kind="run-evidence", data=data, summary={"expected": expected, "missing": missing},
                  columns=EVIDENCE_COLUMNS, rows=evidence_rows(rep, journal), footer=footer, layout=EVIDENCE_LAYOUT)


# ---------------------------------------------------------------- vmctl show
def vm_show_output(shown: list[tuple[Vm, InstanceViewJson]], now: datetime) -> Output:
    """Each VM with its instance view exactly as ARM returned it, and readable sections."""
    sections: list[Section] = []
    for vm, view in shown:
        sections += show_sections(vm, view, now)
    return Output(kind="vm-show", data=[{"vm": vm_json(vm, now), "instanceView": view} for vm, view in shown],
                  sections=sections, tsv_rows=[list_row(vm, now, []) for vm, _ in shown])


# ---------------------------------------------------------------- vmctl runs
class RunEntry(TypedDict):
    """One past run in `vmctl runs -o json` (kind `runs`; the contract test pins it)."""

    runId: str | None
    startedAt: str | None
    endedAt: str | None
    verb: str | None
    action: str | None
    ticket: str | None
    command: str | None
    user: str | None
    host: str | None
    vms: int
    summary: dict[str, int] | None
    exitCode: int | None
    state: str            # finished | interrupted | unfinished (no end record: running now, or killed) | unreadable
    resumed: int
    journal: str
    error: str | None     # why the journal could not be read (state `unreadable`)


def run_entry(journal: str, rep: Report | None, error: str | None = None) -> RunEntry:
    if rep is None:
        return {"runId": None, "startedAt": None, "endedAt": None, "verb": None, "action": None, "ticket": None,
                "command": None, "user": None, "host": None, "vms": 0, "summary": None, "exitCode": None,
                "state": "unreadable", "resumed": 0, "journal": journal, "error": error}
    state = "interrupted" if rep["interrupted"] else "finished" if rep["endedAt"] else "unfinished"
    return {"runId": rep["runId"], "startedAt": rep["startedAt"], "endedAt": rep["endedAt"], "verb": rep["verb"],
            "action": rep["action"], "ticket": rep["ticket"], "command": rep["command"], "user": rep["user"],
            "host": rep["host"], "vms": len(rep["vms"]), "summary": rep["summary"],
            "exitCode": None if state == "unfinished" else rep["exitCode"], "state": state,
            "resumed": rep["resumed"], "journal": journal, "error": None}


def _counts(summary: dict[str, int] | None) -> str:
    if not summary:
        return "-"
    order = ("succeeded", "failed", "preempted", "unknown", "skipped", "cancelled", "in-flight", "pending")
    return ", ".join(f"{summary[k]} {k}" for k in order if summary.get(k))


# the journal path is what the operator copies: never left out nor shortened
RUNS_LAYOUT = {"STARTED (UTC)": Col(short="time", key=True), "VERB": Col(key=True), "TICKET": Col(drop=1),
               "STATE": Col(drop=2), "OUTCOMES": Col(note=False), "JOURNAL": Col(note=False)}


def runs_output(entries: list[RunEntry], total: int) -> Output:
    rows = [[e["startedAt"] or "-", e["verb"] or "-", e["ticket"] or "", _counts(e["summary"]),
             "-" if e["exitCode"] is None else str(e["exitCode"]),
             e["state"] + (f" (resumed {e['resumed']}x)" if e["resumed"] else ""), e["journal"]] for e in entries]
    footer = [f"{len(entries)} of {total} runs in the state directory, newest first."
              if entries else "No runs in the state directory yet."]
    if any(e["state"] in ("interrupted", "unfinished") for e in entries):
        first = next(e for e in entries if e["state"] in ("interrupted", "unfinished"))
        footer.append(f"Continue an interrupted run: vmctl resume {first['journal']}  (or vmctl resume --last)")
    return Output(kind="runs", data=entries, summary={"runs": len(entries), "total": total},
                  columns=["STARTED (UTC)", "VERB", "TICKET", "OUTCOMES", "EXIT", "STATE", "JOURNAL"], rows=rows,
                  footer=footer, layout=RUNS_LAYOUT,
                  row_styles=["failed" if e["exitCode"] not in (0, None) or e["state"] == "unreadable" else ""
                              for e in entries])


# ---------------------------------------------------------------- vmctl resume: what is left, and what it will do
RESUME_LABEL: dict[Verdict, str] = {"send": "send", "watch": "watch", "resend": "send again", "found-done": "found done",
                "failed": "found failed", "unknown": "unknown: not sent", "gone": "VM gone: skipped"}


def resume_plan_output(plan: Plan, assessment: Assessment, journal: str) -> Output:
    """The remaining plan of an interrupted run: per unfinished step, what `vmctl resume` will do."""
    steps = [{"index": d.step.index, "subscriptionId": d.step.vm.subscription_id,
              "resourceGroup": d.step.vm.resource_group, "name": d.step.vm.name, "id": d.step.vm.id,
              "production": d.step.vm.production, "action": d.step.action, "resume": d.verdict, "reason": d.reason,
              "correlationId": d.correlation_id} for d in assessment.steps]
    from .planner import CONSEQUENCE

    counts = {v: assessment.count(v) for v in RESUME_LABEL}
    summary: dict[str, int] = {"finished": len(assessment.finished)}
    summary.update((str(v), n) for v, n in counts.items())
    rows = [[str(d.step.index + 1), d.step.vm.subscription_name or d.step.vm.subscription_id, d.step.vm.resource_group,
             d.step.vm.name, "PROD" if d.step.vm.production else "", str(d.step.action), RESUME_LABEL[d.verdict],
             d.reason] for d in assessment.steps]
    what = ", ".join(f"{n} {RESUME_LABEL[v]}" for v, n in counts.items() if n)
    footer = [f"Resume of run {plan.run_id} (vmctl {plan.verb}), journal {journal}: "
              + (what or "nothing left to do")
              + f"; {len(assessment.finished)} step(s) already finished are not touched."]
    if counts["send"] or counts["resend"]:
        footer.append(f"{counts['send'] + counts['resend']} request(s) will be sent: "
                      + CONSEQUENCE.get(plan.action, plan.action) + ".")
    return Output(kind="resume-plan",
                  data={"runId": plan.run_id, "verb": plan.verb, "action": plan.action, "journal": journal,
                        "steps": steps},
                  summary=summary,
                  columns=["#", "SUBSCRIPTION", "GROUP", "NAME", "PROD", "ACTION", "RESUME", "WHY"] if rows else [],
                  rows=rows,
                  footer=footer,
                  row_styles=["prod" if d.step.vm.production and d.verdict in ("send", "resend") else
                              "" if d.verdict in ("send", "resend", "watch") else "dim" for d in assessment.steps])
