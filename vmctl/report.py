"""The run report's data, rebuilt from the journal alone (so `vmctl report JOURNAL` shows any past run). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict

from .errors import FAILED, INTERRUPTED, OK, PARTIAL, TERMINATED
from .evidence import Summary, batch_key, collected, summarize
from .journal import Record, iter_type
from .models import FAILED_OUTCOMES
from .planner import plan_from_json

if TYPE_CHECKING:
    from .cloud import Event
    from .guest.story import GuestJournalFile, GuestStory


class VmEvidence(Summary, total=False):
    correlationId: str
    missing: bool


class ReportVm(TypedDict):
    """One VM of the report (a row of `vms` in the JSON contract)."""

    subscriptionId: str
    subscriptionName: str
    resourceGroup: str
    name: str
    id: str
    production: bool
    before: str
    action: str | None
    hibernate: bool
    path: str
    skip: str | None
    after: str | None
    duration: float | None
    retries: int
    correlationId: str | None
    outcome: str
    reason: str
    wave: int | None
    evidence: VmEvidence | None
    maintenanceResult: str | None
    guest: "GuestStory | None"           # from --guest-journal files; None when none given or none matched
    operationId: str | None          # the batch engine: the VM's ComputeSchedule operationId


ConfirmedBy = Literal["yes-flag", "prompt", "typed-count", "typed-phrase", "plan-file"]
CONFIRMED_BY: dict[str, str] = {
    "yes-flag": "--yes (no prompt)",
    "prompt": "an interactive yes at the [y/N] prompt",
    "typed-count": "the number of production VMs, typed at the prompt",
    "typed-phrase": "the typed phrase for a hard power-off of production VMs",
    "plan-file": "applying a reviewed plan file",
}


class Interruption(TypedDict):
    at: str
    abandoned: bool          # a second Ctrl-C: operations in flight were no longer watched


class Resumption(TypedDict):
    at: str
    user: str | None
    host: str | None
    command: str | None
    confirmedBy: str | None


class StoppedWave(TypedDict):
    wave: int
    reason: str
    notStarted: list[int]


class Report(TypedDict):
    """A run's report: the JSON contract's `data` for `kind: run-report` (tests/test_json_contract.py)."""

    runId: str
    verb: str
    action: str
    command: str | None
    ticket: str | None
    principal: dict[str, str] | None
    host: str | None
    user: str | None
    startedAt: str
    endedAt: str | None
    interrupted: bool
    resumed: int
    skipShutdown: bool
    summary: dict[str, int]
    exitCode: int
    vms: list[ReportVm]
    evidenceCollected: bool
    wavesStopped: list[StoppedWave]
    warnings: list[str]
    confirmedBy: str | None              # how the run was confirmed (CONFIRMED_BY); None: not journaled
    interruptions: list[Interruption]    # each Ctrl-C/SIGTERM that stopped it, in order
    resumes: list[Resumption]            # each `vmctl resume` of it, in order
    guestJournals: list[str]             # the guest journals joined (`vmctl report --guest-journal`)
    engine: str                          # arm, or batch (ComputeSchedule)

FAILURE_SKIPS = {"pre-hook-failed"}  # skips that mean the operator's intent was not carried out


def build(records: list[Record], guest: "list[GuestJournalFile] | None" = None) -> Report:
    """The report; with `guest` (journals collected from the VMs) each VM also gets its guest side."""
    run = records[0]
    plan_rec = next(iter_type(records, "plan"))
    plan = plan_from_json(plan_rec["plan"])
    outcomes: dict[int, Record] = {}
    for r in iter_type(records, "outcome"):
        prev = outcomes.get(r["index"])
        if prev is None or prev["status"] in ("cancelled", "in-flight", "unknown"):  # a resume may settle these
            outcomes[r["index"]] = r
    after: dict[str, str] = {}
    for r in iter_type(records, "verify"):
        after.update(r.get("states") or {})
    interrupted = any(True for _ in iter_type(records, "interrupted"))
    signals = [r.get("signal") for r in iter_type(records, "interrupted")]
    maint: dict[int, dict[str, object]] = {}
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
        reached[r["index"]] = r.get("correlationId") or ""
    batch = plan.options.engine == "batch"
    vms: list[ReportVm] = []
    counts = {"succeeded": 0, "failed": 0, "preempted": 0, "unknown": 0, "skipped": 0, "cancelled": 0,
              "in-flight": 0, "pending": 0}
    hard_failures = 0
    for s in plan.steps:
        o = outcomes.get(s.index)
        status = o["status"] if o else "pending"
        counts[status] = counts.get(status, 0) + 1
        if status in FAILED_OUTCOMES or \
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
            "evidence": _batch_evidence(s.index, o, evidence) if batch else _vm_evidence(o, reached.get(s.index), evidence),
            "maintenanceResult": _str_or_none((maint.get(s.index) or {}).get("lastOperationResultCode")),
            "guest": _guest(guest, s.vm.id, s.vm.name, run["ts"], last_end["ts"] if last_end else None, o),
            "operationId": o.get("operationId") if o else None,
        })
    acted_ok = sum(1 for v in vms if v["outcome"] == "succeeded")
    left_billed = sum(1 for v in vms if v["after"] == "stopped") if after else \
        sum(1 for v in vms if (v["action"] == "powerOff" and v["outcome"] == "succeeded") or
            (v["action"] is None and v["before"] == "stopped"))
    if interrupted or counts["cancelled"] or counts["in-flight"] or counts["pending"]:
        code = (TERMINATED if signals and signals[-1] == "SIGTERM" else INTERRUPTED) if interrupted else (PARTIAL if hard_failures or acted_ok else FAILED)
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
        "confirmedBy": _confirmed_by(run),
        "interruptions": [{"at": r.get("ts", ""), "abandoned": bool(r.get("abandoned"))}
                          for r in iter_type(records, "interrupted")],
        "resumes": [{"at": r.get("ts", ""), "user": r.get("user"), "host": r.get("host"), "command": r.get("command"),
                     "confirmedBy": _confirmed_by(r)} for r in resumed],
        "guestJournals": [j.path for j in guest or []],
        "engine": plan.options.engine,
    }


def _guest(journals: "list[GuestJournalFile] | None", vm_id: str, name: str, start: str, end: str | None,
           outcome: Record | None) -> "GuestStory | None":
    if not journals:
        return None
    from .guest.story import story, with_operation_end

    found = story(journals, vm_id, name, start, end)
    if found is None:
        return None
    ended = outcome["ts"] if outcome and outcome["status"] == "succeeded" else None
    return with_operation_end(found, ended)


def _confirmed_by(record: Record) -> str | None:
    """The `confirmedBy` field of a `run` or `resume` record (a journal from an older vmctl has none)."""
    value: object = record.get("confirmedBy")  # read back from disk: not trusted to be a string
    return value if isinstance(value, str) and value else None


def _str_or_none(v: object) -> str | None:
    return None if v is None else str(v)


def warnings(records: list[Record]) -> list[str]:
    """What the run could not do after acting (the after-state read, the Activity Log): said, not swallowed."""
    out = [f"the after-state of subscription {r.get('subscription')} could not be read: {r.get('error')}"
           for r in iter_type(records, "verify-failed")]
    out += [f"the Activity Log could not be read: {r.get('error')}" for r in iter_type(records, "evidence-failed")]
    return out


def _batch_evidence(index: int, outcome: Record | None, evidence: dict[str, list[Event]]) -> VmEvidence | None:
    """A batch step's Activity Log record: the VM operation ComputeSchedule ran, filed under its
    operationId (or correlationId#index when it was watched by the VM's state); its
    `correlationId` is the one the Activity Log gives that VM operation."""
    if outcome is None or outcome["status"] not in ("succeeded", "failed", "preempted", "unknown", "in-flight"):
        return None
    op_id, cid = outcome.get("operationId"), outcome.get("correlationId") or ""
    events = evidence.get(batch_key(index, op_id, cid).lower(), [])
    if not events:
        if not op_id:
            return None  # refused by ComputeSchedule (no operation), or never sent
        return {"correlationId": "", "complete": False, "missing": True, "statuses": []}
    logged = next((str(e.get("correlationId")) for e in events if e.get("correlationId")), "")
    return {"correlationId": logged, "missing": False, **summarize(events, accepted=True)}


def _vm_evidence(outcome: Record | None, accepted_cid: str | None,
                 evidence: dict[str, list[Event]]) -> VmEvidence | None:
    """The Activity Log's record of this VM's operation; None when no request reached Compute."""
    cid = (outcome.get("correlationId") if outcome else None) or accepted_cid
    if not cid or (outcome and outcome["status"] == "cancelled" and not accepted_cid):
        return None
    events = evidence.get(cid.lower(), [])
    if not events:
        return {"correlationId": cid, "complete": False, "missing": True, "statuses": []}
    return {"correlationId": cid, "missing": False, **summarize(events, accepted=accepted_cid is not None)}
