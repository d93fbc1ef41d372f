"""Scheduled Events as data, and the watcher's decisions on them: which events to act on, the
drain hook's deadline, whether to approve. Pure functions over frozen dataclasses; no I/O.

Facts (wire contract §14, docs/guest.md): an event names VMs by name in `Resources`; approval
(POST StartRequests) releases the event for *every* VM in `Resources`; without approval it starts
at `NotBefore` (Reboot and Freeze 15 min after it is scheduled, Redeploy 10 min, Preempt 30 s,
Terminate 5-15 min); `NotBefore` is `""` once Started; a finished event disappears.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, get_args

EventType = Literal["Freeze", "Reboot", "Redeploy", "Preempt", "Terminate"]
ApprovePolicy = Literal["never", "after-drain", "user-events"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
APPROVE_POLICIES: tuple[ApprovePolicy, ...] = get_args(ApprovePolicy)
DEFAULT_TYPES: tuple[EventType, ...] = ("Reboot", "Redeploy", "Preempt", "Terminate")

# The drain must fit Azure's graceful-shutdown window: "The platform will wait 5 minutes for the
# virtual machine to shut down gracefully" (seeds: Azure Linux graceful shutdown). The same hook is
# the shutdown unit's stop action, so its cap stays below 300 s with room for the rest of shutdown;
# the default follows the shutdown-hook advice to finish "within a minute or less" plus headroom.
DEFAULT_HOOK_TIMEOUT = 120.0
MAX_HOOK_TIMEOUT = 270.0
DEFAULT_MARGIN = 10.0          # the drain ends this long before NotBefore (SIGTERM, then SIGKILL)
DEFAULT_FREEZE_THRESHOLD = 10  # seconds: a shorter Freeze (typically ~5 s) is ignored


class DocumentError(ValueError):
    """An IMDS answer that is not a Scheduled Events document; the message says what is wrong."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str                        # one of EVENT_TYPES, or a type this vmctl does not know
    status: str                      # Scheduled | Started
    resources: tuple[str, ...]
    not_before: float | None         # epoch seconds; None once Started (or not given)
    source: str                      # Platform | User
    duration: int                    # DurationInSeconds: -1 unknown, 0 no impact
    description: str = ""


@dataclass(frozen=True)
class Document:
    incarnation: int
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Policy:
    types: frozenset[str] = frozenset(DEFAULT_TYPES)
    freeze_threshold: int = DEFAULT_FREEZE_THRESHOLD
    approve: ApprovePolicy = "after-drain"
    margin: float = DEFAULT_MARGIN
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT


def parse_not_before(text: str) -> float | None:
    """RFC 1123 (`Mon, 19 Sep 2016 18:29:47 GMT`) -> epoch seconds; "" -> None. DocumentError otherwise."""
    if text == "":
        return None
    try:
        dt = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise DocumentError(f"NotBefore {text[:60]!r} is not an RFC 1123 date") from None
    if dt.tzinfo is None:
        raise DocumentError(f"NotBefore {text[:60]!r} has no time zone (IMDS writes GMT)")
    return dt.timestamp()


def parse_document(text: str) -> Document:
    """A Scheduled Events document, checked field by field; DocumentError names the first problem."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise DocumentError(f"not JSON: {text[:80]!r}") from None
    if not isinstance(raw, dict):
        raise DocumentError("not a JSON object")
    inc = raw.get("DocumentIncarnation")
    if isinstance(inc, bool) or not isinstance(inc, int):
        raise DocumentError(f"DocumentIncarnation is not a whole number: {inc!r}")
    items = raw.get("Events")
    if not isinstance(items, list):
        raise DocumentError("Events is not a list")
    out = []
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            raise DocumentError(f"Events[{i}] is not an object")
        eid, etype, status = e.get("EventId"), e.get("EventType"), e.get("EventStatus")
        res = e.get("Resources", [])
        if not isinstance(eid, str) or not eid:
            raise DocumentError(f"Events[{i}].EventId is missing")
        if not isinstance(etype, str) or not isinstance(status, str):
            raise DocumentError(f"Events[{i}] ({eid}): EventType or EventStatus is missing")
        if not isinstance(res, list) or not all(isinstance(r, str) for r in res):
            raise DocumentError(f"Events[{i}] ({eid}): Resources is not a list of names")
        nb = e.get("NotBefore", "")
        if not isinstance(nb, str):
            raise DocumentError(f"Events[{i}] ({eid}): NotBefore is not a string")
        dur = e.get("DurationInSeconds", -1)
        if isinstance(dur, bool) or not isinstance(dur, int):
            dur = -1
        out.append(Event(id=eid, type=etype, status=status, resources=tuple(res), not_before=parse_not_before(nb),
                         source=str(e.get("EventSource", "")), duration=dur, description=str(e.get("Description", ""))))
    return Document(incarnation=inc, events=tuple(out))


def ignore_reason(event: Event, vm_name: str, policy: Policy) -> str | None:
    """Why this VM leaves `event` alone, or None to act on it (drain, maybe approve)."""
    if vm_name.lower() not in {r.lower() for r in event.resources}:
        return f"for other VMs ({', '.join(event.resources) or 'none named'}), not {vm_name}"
    if event.type not in policy.types:
        return f"{event.type} is not in the watched types ({', '.join(sorted(policy.types))})"
    if event.type == "Freeze" and 0 <= event.duration <= policy.freeze_threshold:
        return f"Freeze of {event.duration} s is within the threshold of {policy.freeze_threshold} s"
    return None


def drain_deadline(event: Event, now: float, policy: Policy) -> float | None:
    """When the drain hook gets SIGTERM: NotBefore minus the margin, and at most hook_timeout from
    now. None when there is no time left (or the event has already Started)."""
    if event.not_before is None or event.status != "Scheduled":
        return None
    end = min(event.not_before - policy.margin, now + policy.hook_timeout)
    return end if end > now else None


def approval(event: Event, vm_name: str, policy: Policy, drained: bool) -> tuple[bool, str]:
    """(approve now?, why). Approval releases the event for every VM in Resources, and this watcher
    knows only that *it* drained: so it approves only an event for itself alone."""
    if policy.approve == "never":
        return False, "--approve never: NotBefore decides"
    if not drained:
        return False, "the drain did not succeed: NotBefore decides"
    if event.status != "Scheduled":
        return False, f"the event is already {event.status}"
    others = [r for r in event.resources if r.lower() != vm_name.lower()]
    if others:
        return False, (f"approval would also release {', '.join(others)}, which may not have drained: "
                       "NotBefore decides")
    if policy.approve == "user-events" and event.source != "User":
        return False, f"--approve user-events: a {event.source or 'Platform'} event keeps its schedule"
    return True, "drained, and the event is for this VM alone"


def check_policy(policy: Policy) -> list[str]:
    """Problems with a policy's numbers, each one sentence (empty when fine)."""
    problems = []
    if not (math.isfinite(policy.hook_timeout) and 0 < policy.hook_timeout <= MAX_HOOK_TIMEOUT):
        problems.append(f"--hook-timeout {policy.hook_timeout:g} must be above 0 and at most {MAX_HOOK_TIMEOUT:g} s "
                        "(the drain must fit Azure's 5-minute graceful-shutdown window)")
    if not (math.isfinite(policy.margin) and 0 <= policy.margin <= 600):
        problems.append(f"--margin {policy.margin:g} must be from 0 to 600 s")
    if policy.freeze_threshold < 0:
        problems.append(f"--freeze-threshold {policy.freeze_threshold} must be 0 or more seconds")
    unknown = sorted(set(policy.types) - set(EVENT_TYPES))
    if unknown:
        problems.append(f"--events: unknown type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}")
    if policy.approve not in APPROVE_POLICIES:
        problems.append(f"--approve {policy.approve!r}: use one of {', '.join(APPROVE_POLICIES)}")
    return problems
