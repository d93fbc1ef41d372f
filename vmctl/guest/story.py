"""The guest's side of a host run: what each VM's watcher did while `vmctl restart` (or any run) acted on it.

Pure: it joins guest journals (collected from the VMs, e.g. with scp) with a run's time window. The host
never sees Scheduled Events (they live in each VM's IMDS), so the guest journal is the record of
whether the VM drained, whether it approved, and how long before `NotBefore` it did.

A journal belongs to a VM by its `identity` record (resource id, or the name when IMDS gave no id). Within
the run's window the first event the watcher acted on whose `Resources` names the VM is the story; with
none, the shutdown unit's drain (`hook` phase `shutdown`, a stop or deallocate) is; with neither, the first
event it ignored (and why).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal, TypedDict

from ..errors import InputError
from ..timefmt import parse_iso, stamp
from .journal import GuestRecord, read

StoryKind = Literal["event", "shutdown", "ignored"]


class GuestStory(TypedDict):
    """One VM's guest side during a run (`guest` of a run-report VM)."""

    journal: str
    kind: StoryKind               # event: a Scheduled Event it acted on; shutdown: the shutdown drain; ignored
    eventId: str | None
    eventType: str | None
    eventSource: str | None
    seenAt: str
    notBefore: str | None         # ISO 8601 (IMDS writes RFC 1123)
    drained: bool                 # the drain hook ran and succeeded
    drainSeconds: float | None
    drainReason: str
    approved: bool                # StartRequests was sent and answered
    approvedAt: str | None
    approvalReason: str
    secondsSaved: float | None    # NotBefore minus the approval: how much earlier the event could start
    recovered: bool | None        # the recover hook ran (None: not yet, or not an event)
    operationEndedBeforeNotBefore: float | None  # host side: NotBefore minus the operation's end as vmctl saw it


@dataclass(frozen=True)
class GuestJournalFile:
    path: str
    records: list[GuestRecord]
    ids: frozenset[str]           # lower-case resource ids of its identity records
    names: frozenset[str]         # lower-case VM names of its identity records


def load(paths: list[Path]) -> list[GuestJournalFile]:
    """Each PATH: a guest journal, or a directory of them (`*.jsonl`). InputError (exit 2) for none or a bad one."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise InputError(f"--guest-journal {p}: the directory holds no .jsonl file.",
                                 "Give the guest journals collected from the VMs (vmctl guest watch --journal).")
            files += found
        else:
            files.append(p)
    out: list[GuestJournalFile] = []
    for f in files:
        records = read(f)
        ids = frozenset(r.get("resourceId", "").lower() for r in records if r["type"] == "identity") - {""}
        names = frozenset(r.get("vm", "").lower() for r in records if r["type"] == "identity") - {""}
        if not names:
            raise InputError(f"--guest-journal {f}: no identity record (the watcher never learned its VM from IMDS).",
                             "Give a journal written by `vmctl guest watch` after it reached IMDS.")
        out.append(GuestJournalFile(str(f), records, ids, names))
    return out


def _iso_not_before(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return stamp(parsedate_to_datetime(text))
    except (TypeError, ValueError):
        return None


def _seconds_between(later: str, earlier: str) -> float:
    return round((parse_iso(later) - parse_iso(earlier)).total_seconds(), 3)


def _story(j: GuestJournalFile, name: str, start: str, end: str | None) -> GuestStory | None:
    def in_window(r: GuestRecord) -> bool:
        return r["ts"] >= start and (end is None or r["ts"] <= end)

    def names_me(r: GuestRecord) -> bool:
        return name.lower() in (x.lower() for x in r.get("resources") or [])

    events = [r for r in j.records if r["type"] == "event" and in_window(r) and names_me(r)]
    acted = [r for r in events if r.get("action") == "act"]
    if acted:
        ev = acted[0]
        eid = ev.get("eventId", "")
        drain = next((r for r in j.records if r["type"] == "hook" and r.get("phase") == "drain"
                      and r.get("eventId") == eid), None)
        approve = next((r for r in j.records if r["type"] == "approve" and r.get("eventId") == eid), None)
        recover = next((r for r in j.records if r["type"] == "recover" and r.get("eventId") == eid), None)
        approved = bool(approve and approve.get("sent"))
        return {
            "journal": j.path, "kind": "event", "eventId": eid, "eventType": ev.get("eventType"),
            "eventSource": ev.get("source"), "seenAt": ev["ts"], "notBefore": _iso_not_before(ev.get("notBefore")),
            "drained": bool(drain and drain.get("ok")), "drainSeconds": drain.get("duration") if drain else None,
            "drainReason": (drain.get("reason") or "") if drain else "no drain hook ran",
            "approved": approved, "approvedAt": approve["ts"] if approve and approved else None,
            "approvalReason": (approve.get("reason") or "") if approve else "",
            "secondsSaved": approve.get("secondsBeforeNotBefore") if approve and approved else None,
            "recovered": bool(recover.get("ok")) if recover else None, "operationEndedBeforeNotBefore": None,
        }
    shutdown = next((r for r in j.records if r["type"] == "hook" and r.get("phase") == "shutdown" and in_window(r)),
                    None)
    if shutdown is not None:
        return {
            "journal": j.path, "kind": "shutdown", "eventId": None, "eventType": None, "eventSource": None,
            "seenAt": shutdown["ts"], "notBefore": None, "drained": bool(shutdown.get("ok")),
            "drainSeconds": shutdown.get("duration"), "drainReason": shutdown.get("reason") or "",
            "approved": False, "approvedAt": None, "approvalReason": "a shutdown has no event to approve",
            "secondsSaved": None, "recovered": None, "operationEndedBeforeNotBefore": None,
        }
    if events:
        ev = events[0]
        return {
            "journal": j.path, "kind": "ignored", "eventId": ev.get("eventId"), "eventType": ev.get("eventType"),
            "eventSource": ev.get("source"), "seenAt": ev["ts"], "notBefore": _iso_not_before(ev.get("notBefore")),
            "drained": False, "drainSeconds": None, "drainReason": "", "approved": False, "approvedAt": None,
            "approvalReason": f"ignored: {ev.get('reason') or 'not acted on'}", "secondsSaved": None,
            "recovered": None, "operationEndedBeforeNotBefore": None,
        }
    return None


def story(journals: list[GuestJournalFile], vm_id: str, name: str, start: str, end: str | None) -> GuestStory | None:
    """The guest side of VM `vm_id`/`name` between `start` and `end` (None: the run has not ended), or None."""
    mine = [j for j in journals if vm_id.lower() in j.ids or (not j.ids and name.lower() in j.names)]
    for j in mine:
        found = _story(j, name, start, end)
        if found is not None:
            return found
    return None


def with_operation_end(s: GuestStory, operation_end: str | None) -> GuestStory:
    """`s` with the seconds from the host's end of the operation to NotBefore (> 0: the operation was over
    before Azure would have started it without the approval)."""
    if operation_end is None or s["notBefore"] is None or s["kind"] != "event":
        return s
    return {**s, "operationEndedBeforeNotBefore": _seconds_between(s["notBefore"], operation_end)}
