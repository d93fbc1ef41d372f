"""What `vmctl resume` does for each step an interrupted run did not finish. Never prints.

At most once per intent, also across a crash: the journal records each `request` (with its
correlation id) before the POST is sent, and its `accepted` answer after. A step with a request
but no answer (the run was killed in between) may have landed. It is sent again only when nothing
shows it did: the VM is not busy, not at the target, and the Activity Log has no event with its
correlation id after the Activity Log's own lag (Microsoft: "3 to 20 minutes") has passed.
Otherwise it is watched (by its status URL, or by the VM's state), found done, or `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Literal

from .cloud import FleetClient
from .errors import NotFoundError
from .evidence import Filters, summarize
from .executor import Resumed
from .inventory import current_state
from .journal import Journal, Record, iter_type
from .models import Plan, Step, VmStatus, at_target, vm_busy
from .pacing import Pacer
from .timefmt import parse_iso

ACTIVITY_LOG_LAG = 20 * 60.0  # seconds: after this, an operation missing from the Activity Log never landed


@dataclass(frozen=True)
class ResumeTargets:
    only: list[int]                 # steps the executor runs (sends, or watches when in `resumed`)
    resumed: dict[int, Resumed]     # steps to watch instead of sending


# What a resume does with one unfinished step: send it (never sent), watch it (it was accepted, or
# it landed), resend it (proven never to have landed), or settle it now without a request.
Verdict = Literal["send", "watch", "resend", "found-done", "failed", "unknown", "gone"]
MAY_WRITE: tuple[Verdict, ...] = ("send", "resend", "watch", "unknown")  # a resume may send a request for these
VERDICT_OUTCOME: dict[Verdict, str] = {"found-done": "succeeded", "failed": "failed", "unknown": "unknown",
                                       "gone": "skipped"}


@dataclass(frozen=True)
class ResumeStep:
    step: Step
    verdict: Verdict
    reason: str
    correlation_id: str | None = None
    resumed: Resumed | None = None   # for "watch": what to watch


@dataclass(frozen=True)
class Assessment:
    """What a resume of a journal will do, decided from the journal and current state, with no
    write anywhere (the journal included): `vmctl resume` shows it, `--dry-run` stops there."""

    finished: tuple[int, ...]         # steps that already have a final outcome: never touched again
    steps: tuple[ResumeStep, ...]     # the unfinished acting steps, in plan order

    def count(self, verdict: Verdict) -> int:
        return sum(1 for d in self.steps if d.verdict == verdict)


def _outcome(journal: Journal, s: Step, status: str, reason: str, cid: str | None, skip: str | None = None) -> None:
    journal.write("outcome", vm=s.vm.id, index=s.index, status=status, reason=reason, retries=0,
                  correlationId=cid, duration=None, path=s.path, skipCode=skip)


def resume_targets(client: FleetClient, plan: Plan, records: list[Record], journal: Journal, pacer: Pacer,
                   *, activity_log_lag: float = ACTIVITY_LOG_LAG,
                   now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> ResumeTargets:
    """Steps a previous run did not finish; a completed step is never repeated, and a request that
    may have landed is never sent again without proof that it did not. Journals what it settles."""
    only: list[int] = []
    resumed: dict[int, Resumed] = {}
    for d in assess(client, plan, records, pacer, activity_log_lag=activity_log_lag, now=now).steps:
        s = d.step
        if d.verdict == "send":
            only.append(s.index)
        elif d.verdict == "watch":
            assert d.resumed is not None
            resumed[s.index] = d.resumed
            only.append(s.index)
        elif d.verdict == "resend":
            journal.write("resend", index=s.index, vm=s.vm.id, correlationId=d.correlation_id, reason=d.reason)
            only.append(s.index)
        else:
            _outcome(journal, s, VERDICT_OUTCOME[d.verdict], d.reason, d.correlation_id,
                     "vm-not-found" if d.verdict == "gone" else None)
    return ResumeTargets(only, resumed)


def assess(client: FleetClient, plan: Plan, records: list[Record], pacer: Pacer,
           *, activity_log_lag: float = ACTIVITY_LOG_LAG,
           now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Assessment:
    """Decide, for each step a previous run did not finish, what a resume does with it. Reads the
    VMs' state (and the Activity Log for requests sent but never answered); writes nothing."""
    if plan.options.engine == "batch":
        return _assess_batch(client, plan, records, pacer)
    final = {r["index"] for r in iter_type(records, "outcome")
             if r["status"] in ("succeeded", "failed", "preempted", "skipped")}
    accepted = {r["index"]: r for r in iter_type(records, "accepted")}
    requested: dict[int, Record] = {}
    for r in iter_type(records, "request"):
        requested[r["index"]] = r  # the latest attempt
    todo = [s for s in plan.steps if s.acts and s.index not in final]
    current = current_state(client, (s.vm for s in todo), pacer,
                            maintenance=any(s.action == "performMaintenance" for s in todo))
    out: list[ResumeStep] = []
    for s in todo:
        st = current.get(s.vm.key)
        if st is None:
            try:
                st = client.instance_view(s.vm.subscription_id, s.vm.resource_group, s.vm.name)
            except NotFoundError:
                out.append(ResumeStep(s, "gone", "the VM no longer exists (not found on resume); nothing sent"))
                continue
            except Exception as exc:  # noqa: BLE001 - recorded: the step stays open for the next resume
                out.append(ResumeStep(s, "unknown", f"its state could not be read on resume ({exc}); nothing sent"))
                continue
        acc = accepted.get(s.index)
        req = requested.get(s.index)
        if req is not None and acc is not None and acc["correlationId"] != req["correlationId"] and \
                acc["ts"] < req["ts"]:
            acc = None  # the answer belongs to an earlier attempt
        if _done(s, st, acc is not None):
            out.append(ResumeStep(s, "found-done", "completed while the run was interrupted (found done on resume)",
                                  (acc or req or Record(type="")).get("correlationId")))
            continue
        if acc and acc.get("statusUrl"):
            # sent and accepted: its own status says how it ended; never resend
            acid = acc.get("correlationId") or ""
            out.append(ResumeStep(s, "watch", "accepted before the interruption: watching its operation", acid,
                                  Resumed(acc["statusUrl"], acid)))
            continue
        if req is None:
            out.append(ResumeStep(s, "send", "not sent before the interruption"))
            continue
        cid = req.get("correlationId")
        if not cid:  # a damaged request record: never guess that it did not land
            out.append(ResumeStep(s, "unknown", "sent, result not known: its request record has no correlation id; "
                                  "not resent"))
            continue
        if vm_busy(st.power_state, st.provisioning_state):
            why = ("the run was interrupted between sending the request and journaling its answer; the VM is busy: "
                   "watching it instead of sending again")
            out.append(ResumeStep(s, "watch", why, cid, Resumed(None, cid, attached=why)))
            continue
        verdict = _activity_log(client, s, req, cid)
        if isinstance(verdict, Exception):
            out.append(ResumeStep(s, "unknown", f"sent, result not known: the Activity Log could not be read "
                                  f"({verdict}); not resent", cid))
        elif verdict is None:
            sent = parse_iso(req["ts"])
            waited = (now() - sent).total_seconds()
            if waited >= activity_log_lag:
                out.append(ResumeStep(s, "resend", f"no Activity Log event for {cid} {waited:.0f} s after it was sent: "
                                      "it never landed", cid))
            else:
                out.append(ResumeStep(
                    s, "unknown", f"sent, result not known: the Activity Log has no event for correlation id {cid} yet "
                    f"and may lag up to {activity_log_lag / 60:g} min; not resent. Resume again after "
                    f"{(sent + timedelta(seconds=activity_log_lag)):%H:%M:%S} UTC", cid))
        else:
            status, message = verdict
            if status == "succeeded":
                out.append(ResumeStep(s, "found-done", "found done on resume (the Activity Log records it)", cid))
            elif status == "failed":
                out.append(ResumeStep(s, "failed", f"the Activity Log records it failed: {message}", cid))
            else:
                why = "the Activity Log records the request; watching the VM"
                out.append(ResumeStep(s, "watch", why, cid, Resumed(None, cid, attached=why)))
    return Assessment(tuple(sorted(final)), tuple(out))


def _state(client: FleetClient, s: Step, current: dict[str, VmStatus]) -> VmStatus | ResumeStep:
    """The VM's current state, or the step's verdict when it cannot be read."""
    st = current.get(s.vm.key)
    if st is not None:
        return st
    try:
        return client.instance_view(s.vm.subscription_id, s.vm.resource_group, s.vm.name)
    except NotFoundError:
        return ResumeStep(s, "gone", "the VM no longer exists (not found on resume); nothing sent")
    except Exception as exc:  # noqa: BLE001 - recorded: the step stays open for the next resume
        return ResumeStep(s, "unknown", f"its state could not be read on resume ({exc}); nothing sent")


def _assess_batch(client: FleetClient, plan: Plan, records: list[Record], pacer: Pacer) -> Assessment:
    """The batch engine's steps: an operation ComputeSchedule accepted is re-attached by its
    operationId (never sent again); one vmctl cancelled before it started is sent again; a chunk
    request whose answer was never journaled is sent again only for VMs that show no sign of it,
    and that resend meets ComputeSchedule's OperationConflict wherever the first one landed and
    is still pending (the VM is then watched)."""
    final = {r["index"] for r in iter_type(records, "outcome")
             if r["status"] in ("succeeded", "failed", "preempted", "skipped")}
    ops: dict[int, tuple[str, str, str]] = {}   # index -> (operationId, chunk correlation id, ts)
    for r in iter_type(records, "chunk-accepted"):
        for k, op in (r.get("operations") or {}).items():
            ops[int(k)] = (op, r.get("correlationId") or "", r.get("ts", ""))
    sent: dict[int, Record] = {}
    for r in iter_type(records, "chunk"):
        for i in r.get("indexes") or []:
            sent[i] = r
    cancelled = {op for r in iter_type(records, "cancel") for k, op in (r.get("operations") or {}).items()
                 if (r.get("states") or {}).get(k) == "Cancelled"}
    todo = [s for s in plan.steps if s.acts and s.index not in final]
    current = current_state(client, (s.vm for s in todo), pacer)
    out: list[ResumeStep] = []
    for s in todo:
        st = _state(client, s, current)
        if isinstance(st, ResumeStep):
            out.append(st)
            continue
        answer = ops.get(s.index)
        req = sent.get(s.index)
        if answer is not None and req is not None and req.get("ts", "") > answer[2]:
            answer = None  # a later request (a resend) was never answered
        cid = answer[1] if answer else (req.get("correlationId") if req else None)
        if _done(s, st, answer is not None):
            out.append(ResumeStep(s, "found-done", "completed while the run was interrupted (found done on resume)", cid))
        elif answer is not None and answer[0] not in cancelled:
            out.append(ResumeStep(s, "watch", f"accepted before the interruption: re-attaching by operationId "
                                  f"{answer[0]}", cid, Resumed(None, answer[1], operation_id=answer[0])))
        elif answer is not None:
            out.append(ResumeStep(s, "send", f"its operation {answer[0]} was cancelled before it started: sent again",
                                  cid))
        elif req is None:
            out.append(ResumeStep(s, "send", "not sent before the interruption"))
        elif vm_busy(st.power_state, st.provisioning_state):
            why = ("the run was interrupted between sending its chunk and journaling the answer; the VM is busy: "
                   "watching it instead of sending again")
            out.append(ResumeStep(s, "watch", why, cid, Resumed(None, cid or "", attached=why)))
        elif st.provisioning_state.lower() == "failed":
            out.append(ResumeStep(s, "unknown", "sent, result not known: its chunk's answer was never journaled and "
                                  "the VM's provisioning state is Failed; not resent", cid))
        else:
            out.append(ResumeStep(s, "resend", f"its chunk (correlation id {cid}) was sent but the answer never "
                                  "journaled, and the VM shows no sign of it: sent again; ComputeSchedule answers "
                                  "OperationConflict where the first request landed and is pending, and vmctl then "
                                  "watches the VM", cid))
    return Assessment(tuple(sorted(final)), tuple(out))


def _done(s: Step, st: VmStatus, accepted: bool) -> bool:
    settled = not vm_busy(st.power_state, st.provisioning_state)
    if s.action == "performMaintenance":
        return settled and st.maintenance is not None and st.maintenance.last_result == "MaintenanceCompleted"
    if s.action == "restart":
        return accepted and settled and st.power_state == "running"
    return at_target(s.action, st.power_state, st.provisioning_state)


def _activity_log(client: FleetClient, s: Step, req: Record, cid: str) -> tuple[str, str] | None | Exception:
    """("succeeded"|"failed"|"running", message) from the request's Activity Log events; None if none."""
    sent = parse_iso(req["ts"])
    f = Filters(sent - timedelta(minutes=5), datetime.now(timezone.utc) + timedelta(minutes=5), correlation_ids={cid})
    try:
        flt, _ = f.server_side()
        events = [e for e in client.activity_events(s.vm.subscription_id, flt) if f.matches(e)]
    except Exception as exc:  # noqa: BLE001 - the caller records it; nothing is resent
        return exc
    if not events:
        return None
    summary = summarize(events)
    statuses = [str(x).lower() for x in summary["statuses"]]
    if "succeeded" in statuses:
        return "succeeded", ""
    if "failed" in statuses or "canceled" in statuses:
        return "failed", str(summary.get("statusMessage") or "")
    return "running", ""
