"""The run report, rebuilt from the journal alone (so `vmctl report JOURNAL` shows any past run). Pure."""

from __future__ import annotations

from typing import Any

from .errors import FAILED, INTERRUPTED, OK, PARTIAL
from .evidence import collected, summarize
from .journal import iter_type
from .planner import plan_from_json
from .render import Output, Section

FAILURE_SKIPS = {"pre-hook-failed"}  # skips that mean the operator's intent was not carried out


def build(records: list[dict[str, Any]]) -> dict[str, Any]:
    run = records[0]
    plan_rec = next(iter_type(records, "plan"))
    plan = plan_from_json(plan_rec["plan"])
    outcomes: dict[int, dict[str, Any]] = {}
    for r in iter_type(records, "outcome"):
        prev = outcomes.get(r["index"])
        if prev is None or prev["status"] in ("cancelled", "in-flight", "unknown"):  # a resume may settle these
            outcomes[r["index"]] = r
    after: dict[str, str] = {}
    for r in iter_type(records, "verify"):
        after.update(r.get("states") or {})
    interrupted = any(True for _ in iter_type(records, "interrupted"))
    maint: dict[int, dict[str, Any]] = {}
    for r in iter_type(records, "wave-end"):
        maint.update({int(k): v for k, v in (r.get("results") or {}).items()})
    stopped_waves = [r for r in iter_type(records, "wave-stopped")]
    resumed = [r for r in iter_type(records, "resume")]
    last_end = None
    for r in iter_type(records, "end"):
        last_end = r
    if resumed and last_end is not None and last_end["ts"] > resumed[-1]["ts"]:
        interrupted = last_end.get("interrupted", False)
    evidence = collected(records)
    evidence_status = None
    for r in iter_type(records, "evidence-status"):
        evidence_status = r
    reached: dict[int, str] = {}
    for r in iter_type(records, "accepted"):
        reached[r["index"]] = r["correlationId"]
    vms = []
    counts = {"succeeded": 0, "failed": 0, "preempted": 0, "unknown": 0, "skipped": 0, "cancelled": 0,
              "in-flight": 0, "pending": 0}
    hard_failures = 0
    for s in plan.steps:
        o = outcomes.get(s.index)
        status = o["status"] if o else "pending"
        counts[status] = counts.get(status, 0) + 1
        if status in ("failed", "preempted", "unknown") or \
                (status == "skipped" and o and o.get("skipCode") in FAILURE_SKIPS):
            hard_failures += 1
        vms.append({
            "subscriptionId": s.vm.subscription_id, "subscriptionName": s.vm.subscription_name,
            "resourceGroup": s.vm.resource_group, "name": s.vm.name, "id": s.vm.id, "production": s.vm.production,
            "before": s.vm.power_state, "action": s.action, "hibernate": s.hibernate, "path": s.path,
            "skip": s.skip, "after": after.get(s.vm.id.lower()), "duration": o.get("duration") if o else None,
            "retries": o.get("retries", 0) if o else 0, "correlationId": o.get("correlationId") if o else None,
            "outcome": status, "reason": (o.get("reason") if o else "") or (s.detail if not s.acts else ""),
            "wave": s.wave + 1 if s.wave is not None else None,
            "evidence": _vm_evidence(o, reached.get(s.index), evidence),
            "maintenanceResult": (maint.get(s.index) or {}).get("lastOperationResultCode"),
        })
    acted_ok = sum(1 for v in vms if v["outcome"] == "succeeded")
    left_billed = sum(1 for v in vms if v["after"] == "stopped") if after else \
        sum(1 for v in vms if (v["action"] == "powerOff" and v["outcome"] == "succeeded") or
            (v["action"] is None and v["before"] == "stopped"))
    if interrupted or counts["cancelled"] or counts["in-flight"] or counts["pending"]:
        code = INTERRUPTED if interrupted else (PARTIAL if hard_failures or acted_ok else FAILED)
    elif hard_failures == 0:
        code = OK
    elif acted_ok == 0:
        code = FAILED
    else:
        code = PARTIAL
    return {
        "runId": run["runId"], "verb": plan.verb, "action": plan.action, "command": run.get("command"),
        "ticket": plan.options.ticket, "principal": run.get("principal"), "host": run.get("host"),
        "user": run.get("user"), "startedAt": run["ts"], "endedAt": last_end["ts"] if last_end else None,
        "interrupted": interrupted, "resumed": len(resumed), "skipShutdown": plan.options.skip_shutdown,
        "summary": {**counts, "leftStoppedButBilled": left_billed}, "exitCode": code, "vms": vms,
        "evidenceCollected": evidence_status is not None,
        "wavesStopped": [{"wave": r["wave"], "reason": r["reason"], "notStarted": r.get("notStarted", [])}
                         for r in stopped_waves],
        "warnings": warnings(records),
    }


def warnings(records: list[dict[str, Any]]) -> list[str]:
    """What the run could not do after acting (the after-state read, the Activity Log): said, not swallowed."""
    out = [f"the after-state of subscription {r.get('subscription')} could not be read: {r.get('error')}"
           for r in iter_type(records, "verify-failed")]
    out += [f"the Activity Log could not be read: {r.get('error')}" for r in iter_type(records, "evidence-failed")]
    return out


def _vm_evidence(outcome: dict[str, Any] | None, accepted_cid: str | None,
                 evidence: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The Activity Log's record of this VM's operation; None when no request reached Compute."""
    cid = (outcome or {}).get("correlationId") or accepted_cid
    if not cid or (outcome and outcome["status"] == "cancelled" and not accepted_cid):
        return None
    events = evidence.get(cid.lower(), [])
    if not events:
        return {"correlationId": cid, "complete": False, "missing": True, "statuses": []}
    return {"correlationId": cid, "missing": False, **summarize(events, accepted=accepted_cid is not None)}


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


def output(rep: dict[str, Any]) -> Output:
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
                  row_styles=["failed" if v["outcome"] in ("failed", "preempted", "unknown") else "ok" if v["outcome"] == "succeeded" else ""
                              for v in rep["vms"]])


def markdown(rep: dict[str, Any]) -> str:
    from .render import markdown as md
    from .render import md_escape

    out = output(rep)
    meta = "\n".join(f"- {md_escape(line)}" for line in out.sections[0].lines)
    out.sections = out.sections[1:]
    title = f"## vmctl {rep['verb']}: run {rep['runId']}" + (f" ({md_escape(rep['ticket'])})" if rep["ticket"] else "")
    return f"{title}\n\n{meta}\n\n" + md(out)
