"""Activity Log evidence: for a run (by correlation id) or an ad-hoc window. Decides nothing.

The service accepts one scope filter next to the time window (correlationId, resourceUri,
resourceGroupName or resourceProvider); vmctl sends the most selective one and applies every
other filter itself, on every page, so nothing is silently dropped or truncated.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Required, TypedDict

from .errors import InputError
from .journal import Journal, Record, iter_type
from .timefmt import parse_iso

if TYPE_CHECKING:
    from .cloud import Event, FleetClient

RETENTION_DAYS = 90
SELECT = ("eventName,operationName,status,subStatus,caller,eventTimestamp,submissionTimestamp,correlationId,"
          "operationId,resourceId,resourceGroupName,eventDataId,level,properties,httpRequest")
TERMINAL = {"succeeded", "failed", "canceled"}
PER_ID_QUERIES = 20  # more pending operations than this in a subscription: one window query instead


def iso(dt: datetime) -> str:
    """Full precision: a window ending "now" must include events of the current second."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_when(text: str, now: datetime, flag: str) -> datetime:
    """ISO-8601, or relative to now: '2h', '30m', '3d', '90s' (all in the past)."""
    t = text.strip()
    m = re.fullmatch(r"-?(\d+(?:\.\d+)?)\s*([smhdw])", t)
    if m:
        secs = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - timedelta(seconds=secs)
    try:
        return parse_iso(t)
    except ValueError:
        raise InputError(f"{flag} '{text}' is not a time.",
                         "Give ISO-8601 (2026-11-22T10:00:00Z) or a relative time (30m, 2h, 3d, 1w).") from None


def check_window(start: datetime, end: datetime, now: datetime) -> None:
    oldest = now - timedelta(days=RETENTION_DAYS)
    if start < oldest:
        days = (now - start).days
        raise InputError(
            f"The window starts {days} days ago, but the Activity Log keeps events for {RETENTION_DAYS} days only.",
            f"Start after {iso(oldest)}; older events exist only where they were exported "
            "(a Log Analytics workspace or storage account via a diagnostic setting).")
    if end < start:
        raise InputError("--to is before --from.", "Give a window whose end follows its start.")


@dataclass
class Filters:
    start: datetime
    end: datetime
    correlation_ids: set[str] = field(default_factory=set)
    resource_ids: set[str] = field(default_factory=set)
    resource_groups: set[str] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)   # 'deallocate' or a full operation name
    callers: set[str] = field(default_factory=set)
    statuses: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in ("correlation_ids", "resource_ids", "resource_groups", "operations", "callers", "statuses"):
            setattr(self, name, {v.lower() for v in getattr(self, name)})

    def server_side(self) -> tuple[str, str]:
        """The $filter to send and a note naming the scope used (the most selective single scope)."""
        base = f"eventTimestamp ge '{iso(self.start)}' and eventTimestamp le '{iso(self.end)}'"
        if len(self.correlation_ids) == 1:
            return base + f" and correlationId eq '{next(iter(self.correlation_ids))}'", "correlationId"
        if len(self.resource_ids) == 1:
            return base + f" and resourceUri eq '{next(iter(self.resource_ids))}'", "resourceUri"
        if len(self.resource_groups) == 1:
            return base + f" and resourceGroupName eq '{next(iter(self.resource_groups))}'", "resourceGroupName"
        if self.resource_ids or self.correlation_ids:
            return base + " and resourceProvider eq 'Microsoft.Compute'", "resourceProvider"
        return base, "time window only"

    def client_side(self) -> list[str]:
        names = [("correlationId", self.correlation_ids), ("resourceId", self.resource_ids),
                 ("resourceGroupName", self.resource_groups), ("operationName", self.operations),
                 ("caller", self.callers), ("status", self.statuses)]
        return [n for n, v in names if v]

    def matches(self, e: Event) -> bool:
        if self.correlation_ids and (e.get("correlationId") or "").lower() not in self.correlation_ids:
            return False
        if self.resource_ids and (e.get("resourceId") or "").lower() not in self.resource_ids:
            return False
        if self.resource_groups and (e.get("resourceGroupName") or "").lower() not in self.resource_groups:
            return False
        if self.operations:
            op = e.get("operationName", "").lower()
            if not any(o == op or f"/{o}/" in op for o in self.operations):
                return False
        if self.callers and (e.get("caller") or "").lower() not in self.callers:
            return False
        if self.statuses and e.get("status", "").lower() not in self.statuses:
            return False
        return True


class Summary(TypedDict, total=False):
    """One operation's evidence, as the report and `vmctl evidence` show it."""

    complete: Required[bool]
    statuses: Required[list[str]]
    operationName: str
    caller: str | None
    operationId: str | None
    eventTimestamps: dict[str, str | None]
    submissionTimestamps: dict[str, str | None]
    statusMessage: str | None


_ORDER = {"started": 0, "accepted": 1, "succeeded": 2, "failed": 2, "canceled": 2}


def summarize(events: Iterable[Event], accepted: bool = False) -> Summary:
    """One operation's evidence: status sequence, caller, timestamps, operation id. `accepted`:
    Azure accepted the request (202), so its record also holds the EndRequest `Accepted` event."""
    evs = sorted(events, key=lambda e: (str(e.get("eventTimestamp")), _ORDER.get(e.get("status", "").lower(), 3)))
    if not evs:
        return {"complete": False, "statuses": []}
    terminal = [e for e in evs if e.get("status", "").lower() in TERMINAL]
    last = terminal[-1] if terminal else evs[-1]
    # the Activity Log ingests events out of order: the end event can be visible before the
    # operation's Started event, so the record is complete only with both
    seen = {e.get("status", "").lower() for e in evs}
    complete = bool(terminal) and "started" in seen and (not accepted or "accepted" in seen)
    return {
        "complete": complete, "operationName": last.get("operationName", ""),
        "statuses": [e.get("status", "") for e in evs], "caller": last.get("caller"),
        "operationId": last.get("operationId"),
        "eventTimestamps": {str(e.get("status")): e.get("eventTimestamp") for e in evs},
        "submissionTimestamps": {str(e.get("status")): e.get("submissionTimestamp") for e in evs},
        "statusMessage": last.get("statusMessage"),
    }


# ------------------------------------------------------------------------ a run's evidence
@dataclass
class Expected:
    index: int
    subscription_id: str
    correlation_id: str
    since: datetime
    accepted: bool = True   # False: Compute refused it at once (its record has no Accepted event)
    # the batch engine: ComputeSchedule runs the VM operation, and its Activity Log events need not
    # carry vmctl's correlation id (the simulator gives each its own): matched by resource,
    # operation and time instead, and filed under `key` (the operationId, or correlationId#index)
    resource_id: str = ""
    operation: str = ""
    key: str = ""

    @property
    def ref(self) -> str:
        """Where its evidence is filed (lower case)."""
        return (self.key or self.correlation_id).lower()

    def complete(self, events: Iterable[Event]) -> bool:
        return bool(summarize(events, self.accepted)["complete"])

    def matches(self, e: Event) -> bool:
        """A batch operation's event: its VM, its action, not before it was sent (5 min of clock skew)."""
        if (e.get("resourceId") or "").lower() != self.resource_id.lower():
            return False
        if f"/{self.operation.lower()}/" not in e.get("operationName", "").lower():
            return False
        ts = e.get("eventTimestamp")
        try:
            return ts is None or parse_iso(str(ts)) >= self.since - timedelta(minutes=5)
        except ValueError:
            return True


def batch_key(index: int, operation_id: str | None, correlation_id: str) -> str:
    return operation_id or f"{correlation_id}#{index}"


def expected_operations(records: list[Record], plan_vm_subs: dict[int, str]) -> list[Expected]:
    """Writes that reached Compute: accepted ones, and ones Compute refused (a failed outcome with an id);
    for the batch engine, each VM operation ComputeSchedule ran (batch.batch_targets)."""
    from .planner import plan_from_json

    plan_rec = next(iter_type(records, "plan"), None)
    plan = plan_from_json(plan_rec["plan"]) if plan_rec is not None else None
    if plan is not None and plan.options.engine == "batch":
        from .batch import batch_targets

        return [Expected(i, plan_vm_subs[i], cid, since, resource_id=vm_id, operation=action,
                         key=batch_key(i, op_id, cid))
                for i, (vm_id, action, op_id, cid, since) in batch_targets(records, plan).items()]
    out: dict[str, Expected] = {}
    for r in iter_type(records, "accepted"):
        ts = parse_iso(r["ts"])
        acid = r.get("correlationId") or ""
        out[acid.lower()] = Expected(r["index"], plan_vm_subs[r["index"]], acid, ts)
    for r in iter_type(records, "outcome"):
        cid = r.get("correlationId")
        if r["status"] == "failed" and cid and cid.lower() not in out and not r.get("reason", "").startswith("timed out"):
            ts = parse_iso(r["ts"])
            out[cid.lower()] = Expected(r["index"], plan_vm_subs[r["index"]], cid, ts, accepted=False)
    return list(out.values())


def collected(records: list[Record]) -> dict[str, list[Event]]:
    """Evidence already in the journal, by correlation id (later records add to earlier ones)."""
    out: dict[str, dict[str, Event]] = {}
    for r in iter_type(records, "evidence"):
        bucket = out.setdefault((r.get("evidenceKey") or r.get("correlationId") or "").lower(), {})
        for e in r.get("events") or []:
            bucket[str(e.get("eventDataId"))] = e
    return {cid: list(evs.values()) for cid, evs in out.items()}


def collect(
    client: FleetClient, expected: list[Expected], *, wait: float, have: dict[str, list[Event]] | None = None,
    on_round: Callable[[int, int, float], None] | None = None, stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic, scale: float = 1.0,
) -> dict[str, list[Event]]:
    """Query until every expected operation's terminal event is in, or `wait` seconds have passed.

    Returns all events found, by correlation id (lower-case); callers compare with `expected`.
    Rounds start 1 s apart and spread to 15 s, faster by `scale` (the simulator's time), never
    below 0.2 s and 1 s.
    """
    first_pause, max_pause = max(0.2, 1.0 / scale), max(1.0, 15.0 / scale)
    found: dict[str, dict[str, Event]] = {
        cid: {str(e.get("eventDataId")): e for e in evs} for cid, evs in (have or {}).items()}
    deadline = clock() + wait
    pause = first_pause
    rnd = 0
    while True:
        rnd += 1
        pending = [x for x in expected if not x.complete(found.get(x.ref, {}).values())]
        if not pending:
            break
        by_sub: dict[str, list[Expected]] = {}
        for x in pending:
            if not x.resource_id:
                by_sub.setdefault(x.subscription_id, []).append(x)
        now = datetime.now(timezone.utc)
        _collect_by_resource(client, [x for x in pending if x.resource_id], found, now)
        for sub, xs in by_sub.items():
            start = min(x.since for x in xs) - timedelta(minutes=5)
            end = now + timedelta(minutes=5)
            if len(xs) <= PER_ID_QUERIES:
                queries = [Filters(start, end, correlation_ids={x.correlation_id}) for x in xs]
            else:
                queries = [Filters(start, end, correlation_ids={x.correlation_id for x in xs})]
            for f in queries:
                flt, _ = f.server_side()
                for e in client.activity_events(sub, flt, SELECT):
                    if f.matches(e):
                        found.setdefault(str(e.get("correlationId")).lower(), {})[str(e.get("eventDataId"))] = e
        pending = [x for x in expected if not x.complete(found.get(x.ref, {}).values())]
        left = deadline - clock()
        if on_round:
            on_round(len(pending), len(expected), max(0.0, left))
        if not pending or left <= 0:
            break
        nap = min(pause, left)
        if stop is not None:
            if stop.wait(nap):
                break
        else:
            time.sleep(nap)
        pause = min(max_pause, pause * 1.5)
    return {cid: list(evs.values()) for cid, evs in found.items()}


def _collect_by_resource(client: FleetClient, expected: list[Expected], found: dict[str, dict[str, Event]],
                         now: datetime) -> None:
    """Batch operations: per subscription, one query per VM (resourceUri) when few, else one window
    query on Microsoft.Compute; events matched by VM, action and time (Expected.matches)."""
    by_sub: dict[str, list[Expected]] = {}
    for x in expected:
        by_sub.setdefault(x.subscription_id, []).append(x)
    for sub, xs in by_sub.items():
        start = min(x.since for x in xs) - timedelta(minutes=5)
        end = now + timedelta(minutes=5)
        by_vm: dict[str, list[Expected]] = {}
        for x in xs:
            by_vm.setdefault(x.resource_id.lower(), []).append(x)
        if len(by_vm) <= PER_ID_QUERIES:
            queries = [Filters(start, end, resource_ids={vm}) for vm in by_vm]
        else:
            queries = [Filters(start, end, resource_ids=set(by_vm))]
        for f in queries:
            flt, _ = f.server_side()
            for e in client.activity_events(sub, flt, SELECT):
                for x in by_vm.get((e.get("resourceId") or "").lower(), []):
                    if x.matches(e):
                        found.setdefault(x.ref, {})[str(e.get("eventDataId"))] = e


def record(journal: Journal, expected: list[Expected], found: dict[str, list[Event]]) -> list[str]:
    """Write what was found to the journal; return the correlation ids (batch: the evidence keys)
    still missing their end."""
    missing = []
    for x in expected:
        evs = found.get(x.ref, [])
        if evs:
            if x.key:
                journal.write("evidence", index=x.index, correlationId=x.correlation_id, evidenceKey=x.key, events=evs)
            else:
                journal.write("evidence", index=x.index, correlationId=x.correlation_id, events=evs)
        if not x.complete(evs):
            missing.append(x.key or x.correlation_id)
    journal.write("evidence-status", expected=len(expected), missing=missing)
    return missing
