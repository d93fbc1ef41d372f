"""The watcher's loop (`vmctl guest watch`): poll Scheduled Events about once a second, act on
this VM's events (drain hook with a deadline, then maybe approve), run the recover hook when an
acted-on event disappears, and journal everything. Decisions come from events.py; this module
does the I/O around them and never prints (records go to the journal and to `notify`).

Faults: every IMDS failure (unreachable, slow, an HTTP error such as 410/429/500, a malformed
document) is journaled once when it starts and retried with a capped exponential backoff; the
watcher never exits because of IMDS. `stop` (set on SIGTERM/SIGINT) ends the loop at the next
wait, and stops a running hook (SIGTERM to its process group, SIGKILL after a grace).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Callable

from ..hooks import PASS_ENV, PASS_PREFIXES, HookResult, run_command
from .events import Event, Policy, approval, drain_deadline, ignore_reason
from .imds import Compute, ImdsClient, ImdsError
from .journal import OUTPUT_TAIL, GuestEventJson, GuestJournal, GuestRecord, pending_recovery, read

MAX_BACKOFF = 30.0
APPROVE_ATTEMPTS = 3


@dataclass(frozen=True)
class WatchConfig:
    endpoint: str
    policy: Policy = field(default_factory=Policy)
    drain_hook: str | None = None
    recover_hook: str | None = None
    poll_interval: float = 1.0
    extra_env: tuple[str, ...] = ()
    max_backoff: float = MAX_BACKOFF


def _rfc1123(ts: float | None) -> str | None:
    return None if ts is None else format_datetime(datetime.fromtimestamp(ts, tz=timezone.utc), usegmt=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(e: Event) -> GuestEventJson:
    return {"eventId": e.id, "eventType": e.type, "status": e.status, "resources": list(e.resources),
            "notBefore": _rfc1123(e.not_before), "source": e.source, "durationInSeconds": e.duration}


def hook_environment(phase: str, vm: str, event: Event | None, deadline_seconds: float,
                     extra_env: tuple[str, ...] = (), environ: dict[str, str] | None = None) -> dict[str, str]:
    """The hook's whole environment: the allow-list of vmctl/hooks.py (nothing that authenticates),
    the names in `extra_env`, and VMCTL_* describing the VM, the event and the time left."""
    src = os.environ if environ is None else environ
    wanted = set(PASS_ENV) | set(extra_env)
    env = {k: v for k, v in src.items() if k in wanted or k.startswith(PASS_PREFIXES)}
    env.update(VMCTL_VM_NAME=vm, VMCTL_HOOK_PHASE=phase, VMCTL_DEADLINE_SECONDS=f"{max(0.0, deadline_seconds):.1f}")
    if event is not None:
        env.update(VMCTL_EVENT_ID=event.id, VMCTL_EVENT_TYPE=event.type, VMCTL_EVENT_SOURCE=event.source,
                   VMCTL_EVENT_RESOURCES=",".join(event.resources), VMCTL_NOT_BEFORE=_rfc1123(event.not_before) or "")
    return env


class Watcher:
    def __init__(self, config: WatchConfig, journal: GuestJournal, stop: threading.Event,
                 notify: Callable[[GuestRecord], None] | None = None, client: ImdsClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.journal = journal
        self.stop = stop
        self.notify = notify or (lambda r: None)
        self.client = client or ImdsClient(config.endpoint)
        self.clock = clock
        self.vm: Compute | None = None
        self._failures = 0
        self._last_error: tuple[str, int | None] | None = None
        self.acted: dict[str, str] = {}     # event id -> type: acted on, recover due when it disappears
        self.seen: set[str] = set()

    # ------------------------------------------------------------ journal
    def _rec(self, type_: str, **fields: object) -> None:
        record = self.journal.write(type_, **fields)  # type: ignore[arg-type]
        self.notify(record)

    # ------------------------------------------------------------ faults
    def _failed(self, err: ImdsError) -> float:
        """Journal an IMDS failure (once per kind of failure) and return how long to wait."""
        self._failures += 1
        wait = min(self.config.max_backoff, self.config.poll_interval * float(2 ** min(self._failures - 1, 10)))
        if err.status == 429:
            wait = max(wait, 1.0)
        key = (err.kind, err.status)
        if key != self._last_error:
            self._last_error = key
            self._rec("imds-error", kind=err.kind, error=err.message, retryIn=round(wait, 3))
        return wait

    def _answered(self) -> None:
        if self._last_error is not None:
            self._rec("imds-ok", reason=f"IMDS answers again after {self._failures} failed calls")
        self._failures, self._last_error = 0, None

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        cfg = self.config
        self._rec("start", imds=cfg.endpoint, pid=os.getpid(), policy={
            "approve": cfg.policy.approve, "events": sorted(cfg.policy.types),
            "freezeThreshold": cfg.policy.freeze_threshold, "margin": cfg.policy.margin,
            "hookTimeout": cfg.policy.hook_timeout, "drainHook": cfg.drain_hook, "recoverHook": cfg.recover_hook})
        if self.journal.path.exists():
            self.acted.update(pending_recovery(read(self.journal.path)))
            self.seen.update(self.acted)
        try:
            while not self.stop.is_set() and self.vm is None:
                try:
                    self.vm = self.client.compute()
                except ImdsError as err:
                    self.stop.wait(self._failed(err))
                    continue
                self._answered()
                self._rec("identity", vm=self.vm.name, resourceId=self.vm.resource_id)
            incarnation: int | None = None
            while not self.stop.is_set():
                try:
                    doc = self.client.events()
                except ImdsError as err:
                    self.stop.wait(self._failed(err))
                    continue
                self._answered()
                if doc.incarnation != incarnation:
                    incarnation = doc.incarnation
                    self._rec("document", incarnation=doc.incarnation, events=[event_json(e) for e in doc.events])
                current = {e.id for e in doc.events}
                for e in doc.events:
                    if e.id not in self.seen and not self.stop.is_set():
                        self.seen.add(e.id)
                        self._handle(e)
                for eid in [i for i in self.acted if i not in current]:
                    if self.stop.is_set():
                        break
                    self._recover(eid, self.acted.pop(eid))
                self.stop.wait(cfg.poll_interval)
        finally:
            self._rec("stop", reason="stopped (SIGTERM or SIGINT)")

    def _hook(self, phase: str, command: str, event: Event | None, seconds: float) -> HookResult:
        assert self.vm is not None
        env = hook_environment(phase, self.vm.name, event, seconds, self.config.extra_env)
        grace = min(2.0, max(0.1, self.config.policy.margin / 2))
        return run_command(command, env, seconds, phase, cancel=self.stop, kill_grace=grace)

    def _hook_record(self, phase: str, event_id: str, event_type: str, result: HookResult, started: float,
                     deadline: float | None) -> None:
        reason = result.reason
        if not result.ok and self.stop.is_set():
            reason = f"{phase}-hook stopped: the watcher was stopped (SIGTERM)"
        self._rec("hook", phase=phase, eventId=event_id, eventType=event_type, ok=result.ok,
                  returncode=result.returncode, duration=round(self.clock() - started, 3),
                  deadline=_iso(deadline) if deadline is not None else None, reason=reason,
                  outputTail=result.output[-OUTPUT_TAIL:], outputBytes=result.output_bytes, truncated=result.truncated)

    def _handle(self, e: Event) -> None:
        assert self.vm is not None
        name, policy = self.vm.name, self.config.policy
        why = ignore_reason(e, name, policy)
        self._rec("event", **event_json(e), action="ignore" if why else "act", reason=why or "")
        if why:
            return
        self.acted[e.id] = e.type
        now = self.clock()
        drained = False
        if self.config.drain_hook is None:
            reason = "no --drain-hook: nothing drained"
        else:
            deadline = drain_deadline(e, now, policy)
            if deadline is None:
                reason = "no time to drain: the event has started or NotBefore is within the margin"
            else:
                result = self._hook("drain", self.config.drain_hook, e, deadline - now)
                self._hook_record("drain", e.id, e.type, result, now, deadline)
                drained, reason = result.ok, result.reason
        approve, why_not = approval(e, name, policy, drained)
        if not drained and policy.approve != "never":
            why_not = f"{reason}: NotBefore decides"
        left = None if e.not_before is None else round(e.not_before - self.clock(), 3)
        if approve and left is not None and left <= 0:
            approve, why_not = False, "NotBefore has passed"
        if not approve:
            self._rec("approve", eventId=e.id, eventType=e.type, sent=False, reason=why_not,
                      secondsBeforeNotBefore=left)
            return
        error = ""
        for attempt in range(APPROVE_ATTEMPTS):
            try:
                self.client.approve([e.id])
            except ImdsError as err:
                error = err.message
                if self.stop.wait(min(1.0, self.config.poll_interval * (attempt + 1))):
                    break
                continue
            self._rec("approve", eventId=e.id, eventType=e.type, sent=True, reason=why_not,
                      secondsBeforeNotBefore=round(e.not_before - self.clock(), 3) if e.not_before else None)
            return
        self._rec("approve", eventId=e.id, eventType=e.type, sent=False,
                  reason=f"approval failed ({error}): NotBefore decides", secondsBeforeNotBefore=left)

    def _recover(self, event_id: str, event_type: str) -> None:
        if self.config.recover_hook is None:
            self._rec("recover", eventId=event_id, eventType=event_type, ok=True, reason="no --recover-hook")
            return
        now = self.clock()
        result = self._hook("recover", self.config.recover_hook, None, self.config.policy.hook_timeout)
        self._hook_record("recover", event_id, event_type, result, now, now + self.config.policy.hook_timeout)
        self._rec("recover", eventId=event_id, eventType=event_type, ok=result.ok, reason=result.reason)


def drain_once(config: WatchConfig, journal: GuestJournal, stop: threading.Event, vm_name: str) -> HookResult:
    """The shutdown unit's stop action: run the drain hook now, within the hook timeout (which
    stays below Azure's 5-minute graceful-shutdown window), and journal it."""
    assert config.drain_hook is not None
    started = time.time()
    seconds = config.policy.hook_timeout
    env = hook_environment("shutdown", vm_name, None, seconds, config.extra_env)
    result = run_command(config.drain_hook, env, seconds, "shutdown", cancel=stop)
    journal.write("hook", phase="shutdown", eventId="", eventType="Shutdown", ok=result.ok,
                  returncode=result.returncode, duration=round(time.time() - started, 3),
                  deadline=_iso(started + seconds), reason=result.reason,
                  outputTail=result.output[-OUTPUT_TAIL:], outputBytes=result.output_bytes, truncated=result.truncated)
    return result

