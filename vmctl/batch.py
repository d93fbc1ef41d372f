"""The batch engine: deallocate (hibernate) and start through ComputeSchedule (wire contract §12),
up to 100 VMs per request, with the same plan, Outcomes, journal and report as the ARM engine
(executor.py). Never prints, never re-plans.

Shape: the acting steps are grouped by (subscription, region, operation type) in plan order and
cut into chunks of at most 100 ids (`chunks`). A sender thread sends one Execute request per
chunk when the ARM write bucket allows (ComputeSchedule's requests are ARM writes, status polls
included); the chunk's `chunk` record (its correlation id, one per chunk) is journaled before the
request and its `chunk-accepted` record (every `operationId`, and each VM the service refused with
its `errorCode`) right after it, before the next chunk is sent. The calling thread watches: every
`poll_interval` (15 s, as Microsoft's samples poll, divided by the simulator's time scale) it
asks GetOperationStatus for the operations not yet terminal, up to 100 ids per request, until
each is `Succeeded`, `Failed` or `Cancelled`. A `Failed` one's attempts come from
GetOperationErrors. `Blocked` (the service holds it during an outage) is waited out until the
request's deadline plus its retry window, then the VM's outcome says so (`unknown`: it may
still complete).

One operation per VM per intent, also when a reply is lost. A chunk whose Execute request fails
ambiguously (the connection dropped after sending, a 5xx or 408) may have landed, and without its
answer there are no operation ids to ask about. vmctl reads the VMs: one at the target is done,
one visibly busy is watched by its state, one in provisioning state Failed is `unknown`; the rest
are sent once more in a new request. That resend cannot create a second operation while the
first is pending: ComputeSchedule answers `OperationConflict` for a VM that has one, and such a VM
is then watched by its state. (A first operation that ended without touching the VM, e.g.
cancelled by someone, leaves nothing to double.) A second ambiguous failure is `unknown`.

Stop (Ctrl-C, SIGTERM): no new chunk is sent (those steps end `cancelled`); CancelOperations is
sent for the operations that have not started (PendingScheduling, Scheduled, PendingExecution,
Blocked) and journaled; those end `cancelled` (`vmctl resume` sends them again), the others are
watched to their end. Abandon (a second signal): the rest end `in-flight` with their operationId;
`vmctl resume` re-attaches to them by operationId instead of sending again.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Iterable, Literal

from .cloud import (
    ActionError,
    BatchErrors,
    BatchOpType,
    BatchResult,
    FleetClient,
    RetryableError,
    RetryPolicy,
    ThrottledError,
)
from .errors import CredentialError, VmctlError
from .executor import HIBERNATE_FAILS, MAX_THROTTLED, EngineBase, Resumed
from .inventory import snapshot
from .journal import Journal, Record, iter_type
from .models import TARGET, Outcome, OutcomeStatus, Plan, SkipCode, Step, at_target, vm_busy
from .pacing import Pacer
from .timefmt import parse_iso

Engine = Literal["arm", "batch"]
EngineChoice = Literal["arm", "batch", "auto"]
BATCH_ACTIONS = ("deallocate", "start")   # ComputeSchedule has no powerOff, restart or performMaintenance
MAX_IDS = 100                             # VM ids (and operation ids) per request (wire §12.6)
STATUS_POLL = 15.0                        # seconds between GetOperationStatus rounds (Microsoft's samples)
# From this many acting VMs `--engine auto` uses the batch engine: measured with
# bench/batch_deallocate.py (docs/fleet-scale.md, "Engines"), the operations phase batch/ARM in two
# runs: 10 VMs 1.37, 1.04; 25 VMs 1.29, 1.19; 50 VMs 0.97, 1.14; 100 VMs 0.84, 0.95; 200 VMs 0.83,
# 0.82; 400 VMs 0.57, 0.73. Below 100 the ARM engine ends sooner or as soon (it sees each operation
# end within seconds; the batch engine's status rounds are 15 s apart); from 100 on the batch engine
# ends sooner in every run, with a fraction of the requests (8 versus 220 at 100).
DEFAULT_THRESHOLD = 100
DEFAULT_RETRY = RetryPolicy(count=3, window_minutes=30)
NOT_STARTED = frozenset({"PendingScheduling", "Scheduled", "PendingExecution", "Blocked", ""})
PREEMPTED = "OperationCancelled"          # a Start preempted by a Deallocate (wire §12.4)
ABANDON_GRACE = 5.0


@dataclass(frozen=True)
class Chunk:
    """One Execute request: up to 100 VMs of one subscription and region, one operation type."""

    number: int                 # 1-based, in sending order
    subscription_id: str
    location: str
    op_type: BatchOpType
    indexes: tuple[int, ...]    # the plan steps it carries


def op_type_of(step: Step) -> BatchOpType:
    if step.hibernate:
        return "Hibernate"
    return "Start" if step.action == "start" else "Deallocate"


def chunks(steps: Iterable[Step], size: int = MAX_IDS) -> list[Chunk]:
    """Acting steps grouped by (subscription, region, operation type), in plan order, cut into
    chunks of at most `size` (at most 100) ids."""
    size = max(1, min(MAX_IDS, size))
    groups: dict[tuple[str, str, str], list[Step]] = {}
    for s in steps:
        if s.acts:
            groups.setdefault((s.vm.subscription_id.lower(), s.vm.location.lower(), op_type_of(s)), []).append(s)
    out: list[Chunk] = []
    for members in groups.values():
        first = members[0]
        for j in range(0, len(members), size):
            part = members[j:j + size]
            out.append(Chunk(len(out) + 1, first.vm.subscription_id, first.vm.location, op_type_of(first),
                             tuple(s.index for s in part)))
    return out


def resolve_engine(requested: EngineChoice, action: str, acting: int, threshold: int,
                   hooks: bool) -> tuple[Engine, str]:
    """The engine a run uses, and why (shown with the plan). `auto`: batch for deallocate and start
    from `threshold` acting VMs up, unless hooks are given (they run per VM around each request)."""
    if requested == "arm":
        return "arm", "asked for"
    if requested == "batch":
        return "batch", "asked for"
    if action not in BATCH_ACTIONS:
        return "arm", f"auto: {action} has no batch engine"
    if hooks:
        return "arm", "auto: hooks run per VM around each request"
    if acting < threshold:
        return "arm", f"auto: {acting} VMs, below the batch threshold of {threshold}"
    return "batch", f"auto: {acting} VMs, at or above the batch threshold of {threshold}"


def chunk_lines(plan: Plan) -> list[str]:
    """The plan's engine and, for the batch engine, its requests per subscription and region."""
    o = plan.options
    if o.engine != "batch":
        note = f" ({o.engine_note})" if o.engine_note else ""
        return [f"Engine: arm{note}: one request per VM."] if plan.acting and o.engine_note else []
    cs = chunks(plan.acting, o.parallel or MAX_IDS)
    retry = (f"retryPolicy {o.retry_count} retries within {o.retry_window} min" if o.retry_count
             else "no retries (retryPolicy 0)")
    lines = [f"Engine: batch (ComputeSchedule{', ' + o.engine_note if o.engine_note else ''}): "
             f"{len(plan.acting)} VMs in {len(cs)} request{'s' if len(cs) != 1 else ''} of at most {MAX_IDS}; {retry}."]
    by_group: dict[tuple[str, str, str], list[int]] = {}
    names = {s.vm.subscription_id: s.vm.subscription_name or s.vm.subscription_id for s in plan.acting}
    for c in cs:
        by_group.setdefault((names.get(c.subscription_id, c.subscription_id), c.location, c.op_type), []).append(
            len(c.indexes))
    for (sub, loc, op), sizes in by_group.items():
        shown = ", ".join(str(n) for n in sizes[:8]) + (", ..." if len(sizes) > 8 else "")
        lines.append(f"  {sub} / {loc}: {op} {sum(sizes)} VMs in {len(sizes)} request{'s' if len(sizes) != 1 else ''} "
                     f"({shown})")
    return lines


def chunks_json(plan: Plan) -> list[dict[str, object]]:
    if plan.options.engine != "batch":
        return []
    return [{"number": c.number, "subscriptionId": c.subscription_id, "location": c.location, "opType": c.op_type,
             "steps": list(c.indexes)} for c in chunks(plan.acting, plan.options.parallel or MAX_IDS)]


def sent_before(records: list[Record]) -> set[int]:
    """Steps an earlier run put in a chunk request: a resend of them may meet their first operation
    (OperationConflict), which then means "watch the VM", not "failed"."""
    return {i for r in iter_type(records, "chunk") for i in r.get("indexes") or []}


@dataclass
class _BOp:
    step: Step
    chunk: Chunk
    correlation_id: str
    operation_id: str | None    # None: watched by the VM's state (the request's answer was lost)
    accepted: float             # clock() when accepted
    accepted_wall: float        # time.time() when accepted (durations from the service's completedAt)
    deadline: float
    next_poll: float
    last_contact: float
    state: str = ""
    attached: str = ""
    seen_busy: bool = False
    window: float = 0.0         # seconds a Blocked operation may still start (retry window, scaled)
    last_error: str = ""


@dataclass
class _Progress:
    sending: bool = True
    cancel_done: bool = False
    cancelled: set[str] = field(default_factory=set)   # operation ids vmctl cancelled


class BatchExecutor(EngineBase[_BOp]):
    """Runs a plan's acting steps through ComputeSchedule; the same Outcomes as executor.Executor."""

    def __init__(
        self, client: FleetClient, plan: Plan, journal: Journal, pacer: Pacer, *, poll_interval: float = STATUS_POLL,
        state_interval: float = 5.0, scale: float = 1.0, stop: threading.Event | None = None,
        abandon: threading.Event | None = None, on_outcome: Callable[[Step, Outcome], None] | None = None,
        clock: Callable[[], float] = time.monotonic, contact_timeout: float = 120.0,
    ) -> None:
        super().__init__(client, plan, journal, pacer, stop=stop, abandon=abandon, on_outcome=on_outcome, clock=clock)
        self.poll_interval = poll_interval
        self.state_interval = state_interval
        self.scale = scale
        self.contact_timeout = max(contact_timeout, 2 * poll_interval)
        self._p = _Progress()
        self.retry = RetryPolicy(self.opts.retry_count, self.opts.retry_window) if self.opts.retry_count else None

    # ------------------------------------------------------------------ public
    def run(self, only: list[int] | None = None, resumed: dict[int, Resumed] | None = None,
            guarded: set[int] | None = None) -> dict[int, Outcome]:
        """Execute the acting steps (or the `only` ones); skipped steps get their outcome first.
        `resumed`: watch these (by operationId, or by the VM's state) instead of sending; `guarded`:
        steps an earlier run sent, whose OperationConflict means "the first request landed"."""
        resumed = resumed or {}
        todo = [s for s in self.plan.steps if only is None or s.index in only]
        for s in todo:
            if not s.acts:
                status: OutcomeStatus = "failed" if s.skip in HIBERNATE_FAILS else "skipped"
                self._finish(s, status, s.detail, skip_code=s.skip)
        now = self.clock()
        for idx, r in resumed.items():
            step = self.plan.steps[idx]
            chunk = Chunk(0, step.vm.subscription_id, step.vm.location, op_type_of(step), (idx,))
            self._add(_BOp(step, chunk, r.correlation_id, r.operation_id, now, time.time(),
                           now + self.opts.timeout, now, now, attached="" if r.operation_id else r.attached,
                           window=self._window()))
        acting = [s for s in todo if s.acts and s.index not in resumed]
        sender = threading.Thread(target=self._send_all, args=(acting, guarded or set()), name="vmctl-batch-send",
                                  daemon=True)
        sender.start()
        try:
            self._watch_loop()
        finally:
            sender.join(timeout=ABANDON_GRACE if self.abandon.is_set() else None)
        if self.abandon.is_set():
            self._abandon_rest(acting)
        return self.outcomes

    # ------------------------------------------------------------------ sending
    def _window(self) -> float:
        return 60.0 * (self.opts.retry_window if self.opts.retry_count else 0) / self.scale

    def _send_all(self, acting: list[Step], guarded: set[int]) -> None:
        try:
            planned = chunks(acting, self.opts.parallel or MAX_IDS)
            for n, chunk in enumerate(planned):
                if not self.stop.is_set():
                    self._room(len(chunk.indexes))
                if self.stop.is_set():
                    for c in planned[n:]:
                        for i in c.indexes:
                            self._finish(self.plan.steps[i], "cancelled",
                                         "interrupted before it was sent; `vmctl resume` continues it")
                    return
                try:
                    self._send(chunk, guarded={i for i in chunk.indexes if i in guarded})
                except Exception as exc:  # noqa: BLE001 - every step must end with an outcome
                    for i in chunk.indexes:
                        self._finish(self.plan.steps[i], "failed", f"internal error: {exc!r}")
        finally:
            with self._lock:
                self._p.sending = False

    def _room(self, n: int) -> None:
        """--parallel: at most that many VMs in flight; wait for room for `n` more."""
        cap = self.opts.parallel
        if not cap:
            return
        while not self.stop.is_set():
            with self._lock:
                if len(self._inflight) + n <= cap or not self._inflight:
                    return
            self.stop.wait(0.05)

    def _send(self, chunk: Chunk, guarded: set[int], attempt: int = 1) -> None:
        steps = [self.plan.steps[i] for i in chunk.indexes]
        sub = chunk.subscription_id
        throttled = 0
        retries = 0
        while True:
            if self.stop.is_set():
                for s in steps:
                    self._finish(s, "cancelled", "interrupted before the request was sent; `vmctl resume` continues it",
                                 retries=retries)
                return
            if not self.pacer.acquire(sub, ["writes"], self.stop):
                continue
            cid = str(uuid.uuid4())
            self.journal.write("chunk", chunk=chunk.number, subscription=sub, location=chunk.location,
                               opType=chunk.op_type, correlationId=cid, indexes=list(chunk.indexes), attempt=attempt,
                               retryPolicy={"retryCount": self.retry.count,
                                            "retryWindowInMinutes": self.retry.window_minutes} if self.retry else None)
            try:
                results = self.client.batch_execute(
                    sub, chunk.location, chunk.op_type, [s.vm.id for s in steps], correlation_id=cid, retry=self.retry,
                    on_headers=self._observer(sub))
            except ThrottledError as exc:  # ARM refused it before ComputeSchedule saw it: send again
                throttled += 1
                retries += 1
                self.pacer.penalize(sub, ["writes"], exc.retry_after)
                self.journal.write("retry", chunk=chunk.number, reason=str(exc), wait=exc.retry_after, correlationId=cid)
                if throttled >= MAX_THROTTLED:
                    for s in steps:
                        self._finish(s, "failed", f"gave up after {throttled} throttled attempts: {exc}",
                                     retries=retries, correlation_id=cid)
                    return
                self.stop.wait(exc.retry_after)
                continue
            except RetryableError as exc:
                self.journal.write("chunk-lost", chunk=chunk.number, correlationId=cid, reason=str(exc), attempt=attempt)
                self._lost(chunk, cid, str(exc), attempt)
                return
            except (ActionError, VmctlError) as exc:
                if isinstance(exc, CredentialError):
                    self.client.refresh_credential()
                for s in steps:
                    self._finish(s, "failed", exc.message, retries=retries, correlation_id=cid)
                return
            self._accepted(chunk, steps, cid, results, guarded, retries)
            return

    def _accepted(self, chunk: Chunk, steps: list[Step], cid: str, results: list[BatchResult], guarded: set[int],
                  retries: int) -> None:
        by_id = {r.resource_id.lower(): r for r in results}
        operations: dict[str, str] = {}
        refused: dict[str, str] = {}
        for s in steps:
            r = by_id.get(s.vm.key)
            if r is not None and r.operation_id and not r.error_code:
                operations[str(s.index)] = r.operation_id
            elif r is not None and r.error_code:
                refused[str(s.index)] = f"({r.error_code}) {r.error_details}".strip()
        # every operationId is in the journal before anything else happens (the next chunk included)
        self.journal.write("chunk-accepted", chunk=chunk.number, correlationId=cid, operations=operations,
                           refused=refused)
        now = self.clock()
        for s in steps:
            r = by_id.get(s.vm.key)
            key = str(s.index)
            if key in operations:
                assert r is not None
                self._add(_BOp(s, chunk, cid, operations[key], now, time.time(), now + self.opts.timeout,
                               now + self.poll_interval, now, state=r.state, window=self._window()))
            elif key in refused and r is not None and r.error_code == "OperationConflict" and s.index in guarded:
                self._attach(s, chunk, cid, "ComputeSchedule answered OperationConflict to the resend: the first "
                             "request landed; watching the VM instead of sending again")
            elif key in refused:
                self._finish(s, "failed", refused[key], retries=retries, correlation_id=cid)
            else:
                self._finish(s, "unknown", "ComputeSchedule's answer had no result for it: not resent; `vmctl resume` "
                             "re-checks it", retries=retries, correlation_id=cid)

    def _attach(self, s: Step, chunk: Chunk, cid: str, why: str) -> None:
        now = self.clock()
        self._add(_BOp(s, chunk, cid, None, now, time.time(), now + self.opts.timeout, now + self.state_interval, now,
                       attached=why, window=self._window()))

    def _lost(self, chunk: Chunk, cid: str, error: str, attempt: int) -> None:
        """The Execute request's answer was lost: it may have landed. Read the VMs; resend only those
        that show nothing, once, relying on OperationConflict (see the module docstring)."""
        steps = [self.plan.steps[i] for i in chunk.indexes]
        try:
            current = snapshot(self.client, [chunk.subscription_id])
        except Exception as exc:  # noqa: BLE001 - nothing can be proven: nothing is resent
            for s in steps:
                self._finish(s, "unknown", f"sent, result not known: {error}; the VMs could not be read ({exc}); "
                             "not resent. `vmctl resume` re-checks it", correlation_id=cid)
            return
        resend: list[int] = []
        for s in steps:
            st = current.get(s.vm.key)
            seen = f"power {st.power_state}, provisioning {st.provisioning_state or '?'}" if st else "not listed"
            if st is None:
                self._finish(s, "unknown", f"sent, result not known: {error}; the VM is not in the status listing; "
                             "not resent. `vmctl resume` re-checks it", correlation_id=cid)
            elif at_target(s.action, st.power_state, st.provisioning_state):
                self.journal.write("confirmed-by-state", index=s.index, vm=s.vm.id, correlationId=cid,
                                   power=st.power_state, provisioning=st.provisioning_state,
                                   why=f"the answer to the request was lost ({error}); the VM is at the target")
                self._finish(s, "succeeded", "", correlation_id=cid)
            elif vm_busy(st.power_state, st.provisioning_state):
                self._attach(s, chunk, cid, f"the answer to the request was lost ({error}); the VM is busy ({seen}): "
                             "watching it instead of sending again")
            elif st.provisioning_state.lower() == "failed" or attempt > 1:
                self._finish(s, "unknown", f"sent, result not known: {error}; the VM shows {seen}; not resent. "
                             "`vmctl resume` re-checks it", correlation_id=cid)
            else:
                resend.append(s.index)
        if resend:
            self.journal.write("resend", chunk=chunk.number, indexes=resend, correlationId=cid,
                               reason="the answer was lost and the VMs show no sign of it: sent once more; "
                                      "ComputeSchedule answers OperationConflict where the first request landed")
            self._send(replace(chunk, indexes=tuple(resend)), guarded=set(resend), attempt=attempt + 1)

    def _add(self, op: _BOp) -> None:
        with self._lock:
            if op.step.index not in self.outcomes:
                self._inflight[op.step.index] = op

    # ------------------------------------------------------------------ watching
    def _busy(self) -> bool:
        with self._lock:
            return self._p.sending or bool(self._inflight)

    def _watch_loop(self) -> None:
        while self._busy():
            if self.abandon.is_set():
                return
            if self.stop.is_set() and not self._p.cancel_done:
                with self._lock:
                    sending = self._p.sending
                if not sending:
                    self._cancel_not_started()
            now = self.clock()
            with self._lock:
                ops = list(self._inflight.values())
            polled: list[_BOp] = []
            attached: list[_BOp] = []
            for op in ops:
                if now > op.deadline:
                    self._finish(op.step, "failed", f"timed out after {self.opts.timeout:g} s; the operation may still "
                                 f"complete ({self._ref(op)})", correlation_id=op.correlation_id,
                                 operation_id=op.operation_id)
                elif now - op.last_contact > self.contact_timeout:
                    self._finish(op.step, "unknown", f"sent, result not known: no answer about it for "
                                 f"{self.contact_timeout:g} s (last error: {op.last_error or 'none'}); `vmctl resume` "
                                 "re-checks it", correlation_id=op.correlation_id, operation_id=op.operation_id)
                elif op.next_poll <= now:
                    (attached if op.operation_id is None else polled).append(op)
            if polled:
                self._poll(polled)
            if attached:
                self._poll_states(attached)
            with self._lock:
                pending = [o.next_poll for o in self._inflight.values()]
                sending = self._p.sending
            wait = 0.05 if sending or not pending else max(0.01, min(0.25, min(pending) - self.clock()))
            self.abandon.wait(wait)

    def _observer(self, sub: str) -> Callable[[dict[str, str]], None]:
        return lambda headers: self.pacer.observe(sub, headers)

    @staticmethod
    def _ref(op: _BOp) -> str:
        return f"operation id {op.operation_id}" if op.operation_id else f"correlation id {op.correlation_id}"

    def _groups(self, ops: list[_BOp]) -> list[tuple[str, str, list[_BOp]]]:
        by: dict[tuple[str, str], list[_BOp]] = {}
        for op in ops:
            by.setdefault((op.step.vm.subscription_id, op.step.vm.location), []).append(op)
        return [(sub, loc, group[j:j + MAX_IDS]) for (sub, loc), group in by.items()
                for j in range(0, len(group), MAX_IDS)]

    def _poll(self, ops: list[_BOp]) -> None:
        """GetOperationStatus for the operations due (re-asking only those not terminal), 100 a request."""
        failed: list[tuple[_BOp, BatchResult]] = []
        for sub, loc, group in self._groups(ops):
            if self.abandon.is_set():
                return
            self.pacer.acquire(sub, ["writes"])
            try:
                results = self.client.batch_status(sub, loc, [o.operation_id or "" for o in group],
                                                   correlation_id=str(uuid.uuid4()),
                                                   on_headers=self._observer(sub))
            except ThrottledError as exc:
                self.pacer.penalize(sub, ["writes"], exc.retry_after)
                for o in group:
                    o.next_poll = self.clock() + exc.retry_after
                continue
            except Exception as exc:  # noqa: BLE001 - a failed poll decides nothing
                if isinstance(exc, CredentialError):
                    self.client.refresh_credential()
                for o in group:
                    o.last_error = str(exc)
                    o.next_poll = self.clock() + self.poll_interval
                continue
            by_id = {r.operation_id: r for r in results if r.operation_id}
            in_order = len(results) == len(group)  # one result per id asked, in the order asked
            now = self.clock()
            for n, o in enumerate(group):
                r = by_id.get(o.operation_id or "")
                o.next_poll = now + self.poll_interval
                if r is None:
                    miss = results[n] if in_order else None
                    if miss is not None and miss.error_code:
                        self._finish(o.step, "unknown", f"ComputeSchedule does not know operation {o.operation_id} "
                                     f"({miss.error_code}: {miss.error_details}); not resent. `vmctl resume` "
                                     "re-checks the VM", correlation_id=o.correlation_id, operation_id=o.operation_id)
                    continue
                o.last_contact = now
                o.state = r.state
                if r.state == "Succeeded":
                    self._finish(o.step, "succeeded", "", correlation_id=o.correlation_id, operation_id=o.operation_id,
                                 duration=self._duration(o, r))
                elif r.state == "Failed":
                    failed.append((o, r))
                elif r.state == "Cancelled":
                    if o.operation_id in self._p.cancelled:
                        self._finish(o.step, "cancelled", "cancelled before it started (CancelOperations on the "
                                     "interruption); `vmctl resume` sends it again",
                                     correlation_id=o.correlation_id, operation_id=o.operation_id)
                    else:
                        self._finish(o.step, "preempted", f"({r.op_error_code or 'Cancelled'}) {r.op_error_details} "
                                     "Another request cancelled vmctl's operation before it started.".strip(),
                                     correlation_id=o.correlation_id, operation_id=o.operation_id)
                elif r.state == "Blocked" and now > o.accepted + o.window + self.poll_interval:
                    self._finish(o.step, "unknown", f"ComputeSchedule still holds it Blocked past its deadline and "
                                 f"retry window ({self.opts.retry_window if self.opts.retry_count else 0} min): the "
                                 "service blocks operations during an outage; it may still complete. `vmctl resume` "
                                 "re-checks it", correlation_id=o.correlation_id, operation_id=o.operation_id)
        if failed:
            self._failed(failed)

    def _duration(self, o: _BOp, r: BatchResult) -> float:
        if r.completed_at:
            try:
                seconds = parse_iso(r.completed_at).timestamp() - o.accepted_wall
                if seconds >= 0:
                    return seconds
            except ValueError:
                pass
        return self.clock() - o.accepted

    def _failed(self, failed: list[tuple[_BOp, BatchResult]]) -> None:
        """Failed operations: their attempts from GetOperationErrors, then the outcome."""
        errors: dict[str, BatchErrors] = {}
        for sub, loc, group in self._groups([o for o, _ in failed]):
            self.pacer.acquire(sub, ["writes"])
            try:
                for e in self.client.batch_errors(sub, loc, [o.operation_id or "" for o in group],
                                                  on_headers=self._observer(sub)):
                    errors[e.operation_id] = e
            except Exception as exc:  # noqa: BLE001 - the status's own error still says why
                self.journal.write("list-failed", subscription=sub, error=str(exc),
                                   fallback="the operation status's resourceOperationError")
        for o, r in failed:
            found = errors.get(o.operation_id or "")
            attempts = found.errors if found is not None else ()
            last = attempts[-1] if attempts else None
            code = r.op_error_code or (last.code if last else "") or "Failed"
            details = r.op_error_details or (last.details if last else "")
            reason = f"({code}) {details}".strip()
            if len(attempts) > 1:
                reason += f"; {len(attempts)} attempts (retryPolicy): " + "; ".join(
                    f"{a.code}" + (f" at {a.timestamp}" if a.timestamp else "") for a in attempts)
            status: OutcomeStatus = "preempted" if code == PREEMPTED else "failed"
            if status == "preempted":
                reason += " A newer request on this VM (a deallocate) preempted vmctl's start."
            self._finish(o.step, status, reason, retries=max(0, len(attempts) - 1), correlation_id=o.correlation_id,
                         operation_id=o.operation_id, duration=self.clock() - o.accepted)

    def _poll_states(self, ops: list[_BOp]) -> None:
        """Operations without an id (the answer was lost): the VMs' state from the status listing."""
        for sub in sorted({o.step.vm.subscription_id for o in ops}):
            group = [o for o in ops if o.step.vm.subscription_id == sub]
            self.pacer.acquire(sub, ["reads", "HighCostGet"])
            try:
                current = snapshot(self.client, [sub])
            except Exception as exc:  # noqa: BLE001 - one failed read is not an outcome
                for o in group:
                    o.last_error = str(exc)
                    o.next_poll = self.clock() + self.state_interval
                continue
            now = self.clock()
            for o in group:
                o.next_poll = now + self.state_interval
                st = current.get(o.step.vm.key)
                if st is None:
                    continue
                s = o.step
                if vm_busy(st.power_state, st.provisioning_state):
                    o.seen_busy, o.last_contact = True, now
                elif at_target(s.action, st.power_state, st.provisioning_state):
                    self.journal.write("confirmed-by-state", index=s.index, vm=s.vm.id, correlationId=o.correlation_id,
                                       power=st.power_state, provisioning=st.provisioning_state, why=o.attached)
                    self._finish(s, "succeeded", "", correlation_id=o.correlation_id, duration=now - o.accepted)
                elif o.seen_busy:
                    self._finish(s, "failed", f"the operation ended with the VM {st.power_state} (provisioning "
                                 f"{st.provisioning_state or '?'}), not {TARGET.get(s.action or '', '?')}; {o.attached}",
                                 correlation_id=o.correlation_id, duration=now - o.accepted)

    # ------------------------------------------------------------------ stopping
    def _cancel_not_started(self) -> None:
        """After a stop, once nothing more is being sent: CancelOperations for the operations that
        have not started; journaled. Those Azure cancels end `cancelled`; the rest are watched."""
        self._p.cancel_done = True
        with self._lock:
            ops = [o for o in self._inflight.values() if o.operation_id and o.state in NOT_STARTED]
        for sub, loc, group in self._groups(ops):
            cid = str(uuid.uuid4())
            operations = {str(o.step.index): o.operation_id or "" for o in group}
            try:
                self.pacer.acquire(sub, ["writes"])
                results = self.client.batch_cancel(sub, loc, [o.operation_id or "" for o in group], correlation_id=cid,
                                                   on_headers=self._observer(sub))
            except Exception as exc:  # noqa: BLE001 - journaled; those operations are watched to their end
                self.journal.write("cancel", correlationId=cid, subscription=sub, location=loc, operations=operations,
                                   error=str(exc))
                continue
            states = {r.operation_id: r.state for r in results if r.operation_id}
            cancelled = [o for o in group if states.get(o.operation_id or "") == "Cancelled"]
            self._p.cancelled.update(o.operation_id or "" for o in cancelled)
            self.journal.write("cancel", correlationId=cid, subscription=sub, location=loc, operations=operations,
                               states={str(o.step.index): states.get(o.operation_id or "", "?") for o in group})
            now = self.clock()
            for o in cancelled:
                self._finish(o.step, "cancelled", "cancelled before it started (CancelOperations on the "
                             "interruption); `vmctl resume` sends it again", correlation_id=o.correlation_id,
                             operation_id=o.operation_id, duration=now - o.accepted)

    def _abandon_rest(self, acting: list[Step]) -> None:
        with self._lock:
            flying = list(self._inflight.values())
        for op in flying:
            self._finish(op.step, "in-flight", f"still running when the wait was abandoned ({self._ref(op)}); "
                         "`vmctl resume` re-attaches to it" + (" by operationId" if op.operation_id else ""),
                         correlation_id=op.correlation_id, operation_id=op.operation_id)
        for s in acting:
            if s.index not in self.outcomes:
                self._finish(s, "cancelled", "interrupted before it was sent; `vmctl resume` continues it")

    # ------------------------------------------------------------------ outcomes
    def _finish(self, step: Step, status: OutcomeStatus, reason: str, *, retries: int = 0,
                correlation_id: str | None = None, duration: float | None = None,
                skip_code: SkipCode | None = None, operation_id: str | None = None) -> None:
        out = Outcome(step.index, status, reason, retries, correlation_id,
                      round(duration, 2) if duration is not None else None, step.path, operation_id=operation_id)
        if self._book(step, out, skip_code) and self.on_outcome:
            self.on_outcome(step, out)


def batch_targets(records: list[Record], plan: Plan) -> dict[int, tuple[str, str, str | None, str, datetime]]:
    """For evidence: each batch step that reached Compute, by index: (VM id, action, operationId or
    None, the chunk's correlation id, when its first chunk request was journaled)."""
    first: dict[int, datetime] = {}
    for r in iter_type(records, "chunk"):
        ts = parse_iso(r["ts"]) if r.get("ts") else datetime.now(timezone.utc)
        for i in r.get("indexes") or []:
            first.setdefault(i, ts)
    confirmed = {r["index"] for r in iter_type(records, "confirmed-by-state")}
    out: dict[int, tuple[str, str, str | None, str, datetime]] = {}
    for r in iter_type(records, "outcome"):
        idx = r["index"]
        if idx not in first or r["status"] in ("cancelled", "skipped"):
            out.pop(idx, None)  # cancelled before it started: no VM operation to find
            continue
        op_id = r.get("operationId")
        if op_id or idx in confirmed:
            s = plan.steps[idx]
            out[idx] = (s.vm.id, s.action or "", op_id, r.get("correlationId") or "", first[idx])
    return out
