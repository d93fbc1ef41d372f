"""What each command shows, as data: JSON-able dicts and table rows. Pure (no printing)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .models import FAILED_OUTCOMES, Maintenance, Plan, Vm
from .render import LazyItems, Output, Section
from .timefmt import iso, local, relative, utc

if TYPE_CHECKING:
    from .inventory import Inventory

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


def maintenance_json(m: Maintenance | None, now: datetime) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "allowed": m.allowed, "canStartNow": m.can_start_now(now),
        "selfServiceWindow": {"start": iso(m.self_service_start), "end": iso(m.self_service_end)},
        "scheduledWindow": {"start": iso(m.scheduled_start), "end": iso(m.scheduled_end)},
        "lastOperationResultCode": m.last_result, "lastOperationMessage": m.last_message,
    }


def vm_json(vm: Vm, now: datetime) -> dict[str, Any]:
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


def list_row(vm: Vm, now: datetime, show_tags: list[str]) -> list[str]:
    row = [vm.subscription_name or vm.subscription_id, vm.resource_group, vm.name, vm.location, vm.size,
           power_label(vm), vm.provisioning_state, placement(vm), maintenance_summary(vm.maintenance, now, vm.maintenance_known),
           "PROD" if vm.production else "", ",".join(vm.flags)]
    row += [vm.tag(t) or "" for t in show_tags]
    return row


def list_footer(summary: dict[str, Any]) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in summary["byPowerState"].items()) or "none"
    lines = [f"{summary['total']} VMs: {states}; {summary['production']} production (marked PROD)."]
    if summary["stoppedButBilled"]:
        lines.append(f"{summary['stoppedButBilled']} stopped but still billed for compute: deallocate them to stop paying.")
    if summary.get("maintenanceNotRead"):
        lines.append(f"MAINTENANCE ?: Azure's status listing did not carry it for {summary['maintenanceNotRead']} VMs; "
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


def _status_line(s: dict[str, Any]) -> str:
    when = f" at {s['time']}" if s.get("time") else ""
    msg = f": {s['message']}" if s.get("message") else ""
    return f"{s.get('displayStatus') or s.get('code')} [{s.get('code')}, {s.get('level', 'Info')}]{when}{msg}"


def show_sections(vm: Vm, view: dict[str, Any], now: datetime) -> list[Any]:
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
    rows = []
    for s in plan.steps:
        action = ((s.path if s.path.startswith(s.action or "") else f"{s.action} ({s.path})") if s.path
                  else s.action) if s.acts else f"skip: {s.skip}"
        row = [str(s.index + 1), s.vm.subscription_name or s.vm.subscription_id, s.vm.resource_group, s.vm.name,
               power_label(s.vm), "PROD" if s.vm.production else "", action, s.detail]
        if maint:
            row[4:4] = [placement(s.vm), str(s.wave + 1) if s.wave is not None else "-"]
        rows.append(row)
    sm = plan.summary()
    acts = ", ".join(f"{n} {a}" for a, n in sm["actions"].items()) or "nothing to do"
    skips = ", ".join(f"{n} {k}" for k, n in sm["skipped"].items())
    footer = [f"Plan {plan.run_id}: {acts}" + (f"; skipped: {skips}" if skips else "") + "."]
    if sm["leftStoppedButBilled"]:
        footer.append(f"{sm['leftStoppedButBilled']} VMs will be left stopped but still billed for compute.")
    if plan.options.skip_shutdown and sm["acting"]:
        footer.append("--skip-shutdown: HARD POWER-OFF without guest shutdown (emergency containment only).")
    if maint:
        footer += wave_lines(plan)
        if sm["acting"]:
            footer.append("Azure's guidance: maintenance redeploys the VM, so temporary-disk data is lost; a VM "
                          "deallocated or resized after the notice can lose (or re-gain) its maintenance status.")
    for r in plan.refusals:
        footer.append(f"REFUSED: {r}.")
    styles = ["prod" if (s.acts and plan.options.skip_shutdown) or (s.acts and s.vm.production) else
              "" if s.acts else "dim" for s in plan.steps]
    columns = ["#", "SUBSCRIPTION", "GROUP", "NAME", "POWER", "PROD", "ACTION", "CONSEQUENCE / REASON"]
    if maint:
        columns[4:4] = ["PLACEMENT", "WAVE"]
    return Output(kind="plan", data=plan_json(plan), summary=sm, columns=columns,
                  rows=[[cell or "" for cell in row] for row in rows], footer=footer, row_styles=styles)


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
                rows=rows, footer=footer,
                row_styles=["ok" if r[3] == "yes" else "dim" for r in rows])


# ---------------------------------------------------------------- vmctl list
def vm_list_output(inv: Inventory, subscriptions: list[str], tag_columns: list[str], now: datetime) -> Output:
    from .inventory import summarize

    summary = summarize(inv.vms)
    summary["subscriptions"] = [{"id": s, "name": inv.subscriptions[s], "vmCount": inv.totals[s]}
                                for s in subscriptions]
    def rows() -> tuple[list[list[str]], list[str]]:
        return ([list_row(vm, now, tag_columns) for vm in inv.vms],
                ["prod" if vm.production else "stopped" if vm.stopped_but_billed else
                 "dim" if vm.power_state == "deallocated" else "" for vm in inv.vms])

    return Output(
        kind="vm-list", data=LazyItems(inv.vms, lambda vm: vm_json(vm, now)), summary=summary,
        columns=LIST_COLUMNS + [f"TAG:{t}" for t in tag_columns], build_rows=rows,
        footer=list_footer(summary),
    )


# ---------------------------------------------------------------- the run report (data from report.build)
EVIDENCE_COLUMNS = ["NAME", "OPERATION", "STATUSES", "CALLER", "EVENT TIME (END)", "SUBMITTED (END)", "OPERATION ID"]


def evidence_rows(rep: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in rep["vms"]:
        ev = v.get("evidence")
        if ev is None:
            continue
        if ev.get("missing") or not ev.get("statuses"):
            rows.append([v["name"], "-", "MISSING: not in the Activity Log yet", "-", "-", "-",
                         f"vmctl evidence --journal JOURNAL fetches it (correlation id {ev['correlationId']})"])
            continue
        end = ev["statuses"][-1]
        statuses = " > ".join(ev["statuses"]) + ("" if ev["complete"] else " (no end event yet)")
        rows.append([v["name"], str(ev.get("operationName", "")).replace("Microsoft.Compute/virtualMachines/", ""),
                     statuses, str(ev.get("caller") or "-"), str(ev["eventTimestamps"].get(end, "-")),
                     str(ev["submissionTimestamps"].get(end, "-")), str(ev.get("operationId") or "-")])
    return rows


REPORT_COLUMNS = ["SUBSCRIPTION", "GROUP", "NAME", "BEFORE", "ACTION", "AFTER", "DURATION", "RETRIES",
                  "CORRELATION ID", "OUTCOME", "REASON"]


def _action_label(v: dict[str, Any]) -> str:
    if v["action"] is None:
        return f"skip: {v['skip']}"
    if v["path"]:  # "deallocate (fallback)" already names the action; "hibernate" does not
        return v["path"] if v["path"].startswith(str(v["action"])) else f"{v['action']} ({v['path']})"
    return str(v["action"])


def report_output(rep: dict[str, Any]) -> Output:
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
    ]
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
        footer.append("The run was interrupted; `vmctl resume JOURNAL` continues it.")
    for w in rep.get("warnings") or []:
        footer.append(f"WARNING: {w[0].upper()}{w[1:]}.")
    sections = [Section("Run", meta)]
    ev_rows = evidence_rows(rep)
    if ev_rows:
        title = "Activity Log evidence" + ("" if rep.get("evidenceCollected") else
                                           " (not collected yet: vmctl evidence --journal JOURNAL)")
        missing = sum(1 for r in ev_rows if r[2].startswith("MISSING"))
        if missing:
            footer.append(f"{missing} operations have no Activity Log evidence yet; "
                          "`vmctl evidence --journal JOURNAL` fetches it later.")
        sections.append(Section(title, columns=EVIDENCE_COLUMNS, rows=ev_rows))
    return Output(kind="run-report", data=rep, summary=s, sections=sections, columns=columns,
                  rows=rows, footer=footer,
                  row_styles=["failed" if v["outcome"] in FAILED_OUTCOMES else "ok" if v["outcome"] == "succeeded" else ""
                              for v in rep["vms"]])


def report_markdown(rep: dict[str, Any]) -> str:
    from .render import markdown as md
    from .render import md_escape

    out = report_output(rep)
    meta = "\n".join(f"- {md_escape(line)}" for line in out.sections[0].lines)
    out.sections = out.sections[1:]
    title = f"## vmctl {rep['verb']}: run {rep['runId']}" + (f" ({md_escape(rep['ticket'])})" if rep["ticket"] else "")
    return f"{title}\n\n{meta}\n\n" + md(out)


# ---------------------------------------------------------------- vmctl evidence
ACTIVITY_COLUMNS = ["EVENT TIME", "STATUS", "OPERATION", "RESOURCE GROUP", "RESOURCE", "CALLER", "CORRELATION ID", "OPERATION ID",
           "SUBMITTED"]


def activity_rows(events: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(e.get("eventTimestamp")), str(e.get("status")),
             str(e.get("operationName", "")).replace("Microsoft.Compute/virtualMachines/", ""),
             str(e.get("resourceGroupName") or ""), str(e.get("resourceId") or "").rsplit("/", 1)[-1],
             str(e.get("caller") or ""), str(e.get("correlationId") or ""), str(e.get("operationId") or ""),
             str(e.get("submissionTimestamp"))] for e in events]


def activity_events_output(events: list[dict[str, Any]], fetched: int, start: datetime, end: datetime,
                           server_filter: str, client_side: list[str]) -> Output:
    summary = {"events": len(events), "fetched": fetched, "window": {"from": start.isoformat(), "to": end.isoformat()},
               "serverSideFilter": server_filter, "clientSideFilters": client_side}
    footer = [f"{len(events)} events ({fetched} read from the Activity Log, every page) between "
              f"{start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC."]
    return Output(kind="activity-events", data=events, summary=summary, columns=ACTIVITY_COLUMNS,
                  rows=activity_rows(events), footer=footer)


def run_evidence_output(rep: dict[str, Any], expected: int, missing: list[str]) -> Output:
    data = [{"name": v["name"], "id": v["id"], **(v["evidence"] or {})} for v in rep["vms"] if v["evidence"]]
    footer = [f"{expected - len(missing)} of {expected} operations have their end event in the Activity Log"
              + (f"; {len(missing)} still missing." if missing else ".")]
    return Output(kind="run-evidence", data=data, summary={"expected": expected, "missing": missing},
                  columns=EVIDENCE_COLUMNS, rows=evidence_rows(rep), footer=footer)


# ---------------------------------------------------------------- vmctl show
def vm_show_output(shown: list[tuple[Vm, dict[str, Any]]], now: datetime) -> Output:
    """Each VM with its instance view exactly as ARM returned it, and readable sections."""
    sections: list[Section] = []
    for vm, view in shown:
        sections += show_sections(vm, view, now)
    return Output(kind="vm-show", data=[{"vm": vm_json(vm, now), "instanceView": view} for vm, view in shown],
                  sections=sections)
