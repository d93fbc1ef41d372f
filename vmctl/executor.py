"""Runs a Plan through a cloud client: in-flight operations bounded by the platform's budgets,
pacing, retries of retryable errors only, hooks, cancellation. Every step ends with an Outcome;
every event goes to the journal. Never prints, never re-plans.

Shape: a feeder hands steps to a few submitter threads, which send each POST when the pacer's
write buckets allow and move on; one watcher (the calling thread) polls the operations. There is
no fixed cap on operations in flight (`--parallel` is an optional upper bound): the write
buckets (ARM writes, Compute UpdateVM/DeleteVM) set the rate of new operations, and the feeder
holds new ones back while the read budget that polling needs is queued up (the pacer's read
backlog, pulled down by `x-ms-ratelimit-remaining-*`). See docs/operations.md, "Pacing".

Completion tracking costs what it must. Each operation is first polled near its expected
duration, learned from this run's own completions (the status document's endTime - startTime;
before the first one, a few probe operations are polled on a growing schedule); an operation
still running is polled again at a gap that spreads the polls over the read budget. The
subscription's status listing answers for every operation at once, so it replaces repeated polls
only when it is cheaper: more operations awaiting a repoll than twice the listing's pages
(estimated from the subscription's size); a VM that looks finished in it is then polled once for
its outcome. A listing that fails falls back to polls; every operation is polled at least every
`max_gap`.

At most one operation per intent: a POST whose reply is lost (the connection dropped, a 5xx or
408 after sending) is never resent blindly. vmctl reads the VM: an operation running on it (or
the VM already at the target) means the POST landed, and vmctl watches the VM's state instead of
sending again; only a VM that shows no sign of it gets the POST again. A 409 is never resent.

Never hang: an operation about which nothing is learned for `contact_timeout` seconds (its polls
and the listing failing) ends `unknown`: sent, result not known; `vmctl resume` re-checks it.
One failed poll decides nothing: the outcome comes from the operation or from the VM's state.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time
import uuid
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

from .cloud import Accepted, ActionError, FleetClient, OperationStatus, RetryableError, ThrottledError
from .errors import CredentialError, VmctlError
from .hooks import run_hook
from .inventory import current_state, snapshot
from .journal import Journal
from .models import TARGET, Outcome, OutcomeStatus, Plan, SkipCode, Step, at_target, vm_busy
from .pacing import Pacer

MAX_ATTEMPTS = 6
MAX_THROTTLED = 30       # 429s: the service pacing us, not a failed attempt; bounded separately
LIST_THRESHOLD = 8        # fewest operations awaiting a repoll in one subscription before the listing may pay
LIST_ADVANTAGE = 2.0      # ... and they must outnumber the listing's pages this many times
ASSUMED_PAGE = 200        # VMs per listing page when estimating a pass's cost (Azure's size is undocumented)
MAX_POLL_GAP = 60.0       # poll each operation at least this often (and within half the contact timeout)
MIN_LIST_GAP = 0.5        # seconds between two status-listing passes of one subscription
SUBMITTERS = 6            # threads sending POSTs when --parallel is not given (the pacer sets the rate)
POLLERS = 4               # threads polling; with the submitters, within the SDK's 10 pooled connections
PROBES = 3                # operations per action polled on a growing schedule until a duration is known
LEARN_RESCHEDULE = 8      # completions of an action after which waiting first polls are no longer moved
READ_SHARE = 0.6          # of the read budget's refill that polling plans to use (the rest: others, retries)
LIST_FALLBACK = 30.0      # after a failed listing pass, poll the subscription's operations directly this long
POLL_ERRORS_BEFORE_STATE = 3  # consecutive failed polls before the VM's own state is asked
CONTACT_TIMEOUT = 120.0   # seconds with no answer about an operation before it is `unknown`
HIBERNATE_FAILS = {"hibernation-not-enabled", "hibernation-needs-running"}
ABANDON_GRACE = 5.0       # after a second Ctrl-C: seconds for stopped hooks to be journaled


@dataclass
class _Op:
    step: Step
    accepted: Accepted
    started: float
    deadline: float
    next_poll: float
    retries: int
    poll_errors: int = 0
    list_done: bool = False
    last_contact: float = 0.0   # when a poll or the listing last told us something about it
    last_poll: float = 0.0
    last_error: str = ""
    attached: str = ""          # watched by the VM's state (no status URL): why
    seen_busy: bool = False     # attached: the VM was seen with an operation running
    polls: int = 0              # status polls answered "still running"
    probe: bool = False         # polled on a growing schedule to learn the action's duration


class _Durations:
    """How long each action's operations take in this run: endTime - startTime of each finished
    status document (else the time from acceptance to the poll that saw it end)."""

    def __init__(self) -> None:
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, action: str, seconds: float) -> None:
        with self._lock:
            self._seen.setdefault(action, []).append(seconds)

    def expected(self, action: str) -> float | None:
        """The median so far, or None before the first completion."""
        with self._lock:
            seen = self._seen.get(action)
            return statistics.median(seen) if seen else None

    def count(self, action: str) -> int:
        with self._lock:
            return len(self._seen.get(action) or ())

    def first_poll(self, action: str) -> float | None:
        """When to poll first: late in the distribution, so that almost every operation is done by
        then and a second poll (paid from the read budget) is rare. The earliest completions are
        the shortest operations, so while there are few the longest seen is used; then the 90th
        percentile of the last 200."""
        with self._lock:
            seen = self._seen.get(action)
            if not seen:
                return None
            recent = seen[-200:]
            if len(recent) < 10:
                return max(recent)
            return statistics.quantiles(recent, n=10)[8]


@dataclass
class Resumed:
    """An operation a previous run sent and did not see finish: watch it instead of sending again.
    Without a status URL (the reply was never journaled) it is watched by the VM's state."""
    status_url: str | None
    correlation_id: str
    started: float = field(default_factory=time.monotonic)
    attached: str = ""
    operation_id: str | None = None  # batch engine: re-attach by the ComputeSchedule operationId


OpT = TypeVar("OpT")


class EngineBase(Generic[OpT]):
    """What the ARM executor and the batch engine (batch.py) share: the plan, the journal, the stop
    and abandon events, the steps in flight, and the outcome book (one outcome per step, journaled
    under the lock that records it)."""

    def __init__(self, client: FleetClient, plan: Plan, journal: Journal, pacer: Pacer, *,
                 stop: threading.Event | None, abandon: threading.Event | None,
                 on_outcome: Callable[[Step, Outcome], None] | None, clock: Callable[[], float]) -> None:
        self.client, self.plan, self.journal, self.pacer = client, plan, journal, pacer
        self.opts = plan.options
        self.stop = stop or threading.Event()
        self.abandon = abandon or threading.Event()
        self.on_outcome = on_outcome
        self.clock = clock
        self.outcomes: dict[int, Outcome] = {}
        self._lock = threading.Lock()
        self._inflight: dict[int, OpT] = {}

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _book(self, step: Step, out: Outcome, skip_code: SkipCode | None,
              inside: Callable[[], None] | None = None) -> bool:
        """Record the step's outcome unless it has one: False if it had. `inside` runs under the lock.
        Journaled under the lock that records it, so a step another thread sees as settled
        (_abandon_rest, then the end of the run) already has its journal line."""
        with self._lock:
            if step.index in self.outcomes:
                return False
            self._inflight.pop(step.index, None)
            if inside is not None:
                inside()
            self.journal.write("outcome", **out.record(step.vm.id, skip_code))
            self.outcomes[step.index] = out
        return True


class Executor(EngineBase[_Op]):
    def __init__(
        self, client: FleetClient, plan: Plan, journal: Journal, pacer: Pacer, *, poll_interval: float = 5.0,
        stop: threading.Event | None = None, abandon: threading.Event | None = None,
        on_outcome: Callable[[Step, Outcome], None] | None = None, clock: Callable[[], float] = time.monotonic,
        contact_timeout: float = CONTACT_TIMEOUT,
    ) -> None:
        super().__init__(client, plan, journal, pacer, stop=stop, abandon=abandon, on_outcome=on_outcome, clock=clock)
        self.poll_interval = poll_interval
        self.contact_timeout = contact_timeout
        self._list_failed: dict[str, float] = {}
        cap = self.opts.parallel
        # --parallel: an explicit upper bound on steps in flight, hooks included; none by default
        self._sem = threading.BoundedSemaphore(max(1, cap)) if cap else None
        self._submitters = max(1, cap) if cap else SUBMITTERS
        self._durations = _Durations()
        self._probes: dict[str, int] = {}
        self.max_gap = min(MAX_POLL_GAP, contact_timeout / 2)
        self._held: set[int] = set()
        self._pending = 0          # submit or post-hook tasks not yet finished
        self._futures: list[futures.Future[None]] = []
        self._submitting = True

    # ------------------------------------------------------------------ public
    def run(self, only: list[int] | None = None, resumed: dict[int, Resumed] | None = None) -> dict[int, Outcome]:
        """Execute the acting steps (or the `only` ones); skipped steps get their outcome first."""
        self._submitting = True
        todo = [s for s in self.plan.steps if only is None or s.index in only]
        for s in todo:
            if not s.acts:
                # --hibernate-fallback fail: a VM that was asked to hibernate and cannot has failed
                status: OutcomeStatus = "failed" if s.skip in HIBERNATE_FAILS else "skipped"
                self._finish(s, status, s.detail, skip_code=s.skip)
        for idx, r in (resumed or {}).items():
            step = self.plan.steps[idx]
            if self._sem is not None:
                self._sem.acquire()
            self._held.add(idx)
            self._watch(step, Accepted(r.status_url, None, r.correlation_id, "", {}), retries=0, attached=r.attached)
        acting = [s for s in todo if s.acts and s.index not in (resumed or {})]
        workers = ThreadPoolExecutor(max_workers=self._submitters, thread_name_prefix="vmctl-submit")
        self._slots = threading.Semaphore(self._submitters)  # a step goes to a submitter only when one is free
        self._posts = ThreadPoolExecutor(max_workers=max(1, min(self._submitters, 8)), thread_name_prefix="vmctl-post")
        feeder = threading.Thread(target=self._feed, args=(acting, workers), name="vmctl-feed", daemon=True)
        feeder.start()
        self._pollers = ThreadPoolExecutor(max_workers=POLLERS, thread_name_prefix="vmctl-poll")
        try:
            self._watch_loop()
        finally:
            self._pollers.shutdown(wait=not self.abandon.is_set(), cancel_futures=True)
            workers.shutdown(wait=not self.abandon.is_set(), cancel_futures=True)
            self._posts.shutdown(wait=not self.abandon.is_set(), cancel_futures=True)
            if self.abandon.is_set():
                # hooks stop on abandon (SIGTERM, then SIGKILL): let their threads journal what the
                # hooks printed, but never wait on a request for long
                futures.wait(self._futures, timeout=ABANDON_GRACE)
        if self.abandon.is_set():
            self._abandon_rest(acting)
        return self.outcomes

    def run_waves(self, only: list[int] | None = None, resumed: dict[int, Resumed] | None = None,
                  say: Callable[[str], None] = lambda m: None) -> dict[int, Outcome]:
        """Maintenance: one wave at a time; a wave must be healthy (every VM succeeded, post-hook
        included, and running again) before the next starts; `options.pause` between waves."""
        plan, journal, resumed = self.plan, self.journal, resumed or {}
        todo = set(only) if only is not None else {s.index for s in plan.steps}
        skips = [s.index for s in plan.steps if not s.acts and s.index in todo]
        waves = [(n, [s.index for s in members if s.index in todo]) for n, members in enumerate(plan.waves)]
        waves = [(n, idx) for n, idx in waves if idx]
        if not waves and skips:
            self.run(only=skips)
        for pos, (n, indexes) in enumerate(waves):
            if self.stop.is_set() or self.abandon.is_set():
                break
            journal.write("wave-start", wave=n + 1, steps=indexes)
            say(f"wave {n + 1}: {len(indexes)} VMs")
            self.run(only=(skips + indexes) if pos == 0 else indexes,
                     resumed={i: r for i, r in resumed.items() if i in indexes})
            if self.abandon.is_set():
                return self.outcomes
            results = self._maintenance_results(indexes)
            bad = [plan.steps[i].vm.name for i in indexes
                   if i not in self.outcomes or self.outcomes[i].status != "succeeded"
                   or results.get(i, {}).get("power") != "running"]
            journal.write("wave-end", wave=n + 1, results={str(i): r for i, r in results.items()}, unhealthy=bad)
            if bad:
                journal.write("wave-stopped", wave=n + 1, reason=f"wave {n + 1} is not healthy: {', '.join(bad)}",
                              notStarted=[m + 1 for m, _ in waves[pos + 1:]])
                for _, idx in waves[pos + 1:]:
                    for i in idx:
                        self._finish(plan.steps[i], "cancelled", f"not started: wave {n + 1} was not healthy ({', '.join(bad)})")
                return self.outcomes
            if pos + 1 < len(waves) and plan.options.pause > 0:
                say(f"pausing {plan.options.pause:g} s before wave {waves[pos + 1][0] + 1}")
                if self.stop.wait(plan.options.pause):
                    break
        if self.stop.is_set():
            for _, idx in waves:
                for i in idx:
                    if i not in self.outcomes:
                        self._finish(plan.steps[i], "cancelled",
                                     "interrupted before its wave started; `vmctl resume` continues it")
        return self.outcomes

    def _maintenance_results(self, indexes: list[int]) -> dict[int, dict[str, object]]:
        """After a wave: each VM's power state and maintenanceRedeployStatus, re-read from Azure."""
        steps = self.plan.steps
        current = current_state(self.client, (steps[i].vm for i in indexes), self.pacer, maintenance=True)
        out: dict[int, dict[str, object]] = {}
        for i in indexes:
            vm = current.get(steps[i].vm.key)
            if vm is not None:
                m = vm.maintenance
                out[i] = {"power": vm.power_state, "lastOperationResultCode": m.last_result if m else None,
                          "lastOperationMessage": m.last_message if m else None}
        return out

    # ------------------------------------------------------------------ submission
    def _feed(self, acting: list[Step], workers: ThreadPoolExecutor) -> None:
        try:
            for i, step in enumerate(acting):
                if self._sem is not None:
                    while not self._sem.acquire(timeout=0.2):
                        if self.stop.is_set():
                            break
                if not self.stop.is_set():
                    self._admit(step)
                if self.stop.is_set():
                    for rest in acting[i:]:
                        self._finish(rest, "cancelled", "interrupted before it started; `vmctl resume` continues it")
                    return
                with self._lock:
                    self._held.add(step.index)
                    self._pending += 1
                self._futures.append(workers.submit(self._submit, step))
        finally:
            self._submitting = False

    def _admit(self, step: Step) -> None:
        """Wait for a free submitter, then while the read budget polling needs is queued up more
        than a poll interval ahead: polls of operations already sent come before new ones."""
        while not self._slots.acquire(timeout=0.2):
            if self.stop.is_set():
                return
        sub = step.vm.subscription_id
        while self.pacer.backlog(sub, ["reads"]) > self.poll_interval and not self.stop.is_set():
            self.stop.wait(min(0.25, max(0.01, self.poll_interval / 4)))

    def _submit(self, step: Step) -> None:
        try:
            self._submit_one(step)
        except Exception as exc:  # noqa: BLE001 - every step must end with an outcome
            self._finish(step, "failed", f"internal error: {exc!r}")
        finally:
            self._slots.release()
            with self._lock:
                self._pending -= 1

    def _submit_one(self, step: Step) -> None:
        vm, opts = step.vm, self.opts
        if opts.pre_hook:
            res = run_hook(opts.pre_hook, vm, step.action or "", "pre", opts.hook_timeout, cancel=self.abandon,
                           extra_env=opts.hook_env)
            self.journal.write("hook", index=step.index, vm=vm.id, phase="pre", ok=res.ok,
                               outputBytes=res.output_bytes, truncated=res.truncated,
                               returncode=res.returncode, output=res.output)
            if not res.ok:
                self._finish(step, "skipped", res.reason, skip_code="pre-hook-failed")
                return
        kinds = self.pacer.kinds_for(step.action)
        retries = 0
        last = ""
        attempt = throttled = 0
        while attempt < MAX_ATTEMPTS:
            attempt += 1
            if self.stop.is_set():
                self._finish(step, "cancelled", "interrupted before the request was sent; `vmctl resume` continues it",
                             retries=retries)
                return
            if not self.pacer.acquire(vm.subscription_id, kinds, self.stop):
                attempt -= 1
                continue  # stop was set while waiting: handled at the top of the loop
            cid = str(uuid.uuid4())
            self.journal.write("request", index=step.index, vm=vm.id, action=step.action, attempt=retries + 1,
                               correlationId=cid, hibernate=step.hibernate, skipShutdown=opts.skip_shutdown)
            try:
                acc = self.client.begin_action(
                    vm, step.action or "", correlation_id=cid, hibernate=step.hibernate,
                    skip_shutdown=opts.skip_shutdown and step.action == "powerOff",
                    on_headers=functools.partial(self.pacer.observe, vm.subscription_id))
            except ThrottledError as exc:
                retries += 1
                throttled += 1
                if throttled < MAX_THROTTLED:
                    attempt -= 1  # a 429 says "not yet": it must not cost the VM its outcome in a storm
                last = str(exc)
                self.pacer.penalize(vm.subscription_id, kinds, exc.retry_after)
                self.journal.write("retry", index=step.index, vm=vm.id, reason=last, wait=exc.retry_after,
                                   correlationId=cid)
                self.stop.wait(exc.retry_after)
                continue
            except RetryableError as exc:
                # the reply is lost or says nothing for sure: did the POST land? Never send twice.
                last = str(exc)
                verdict, seen = self._landed(step)
                if verdict != "not-landed":
                    self.journal.write("reply-lost", index=step.index, vm=vm.id, correlationId=cid, reason=last,
                                       verdict=verdict, seen=seen)
                    if verdict == "unknown":
                        self._finish(step, "unknown", f"sent, result not known: {last}; the VM could not be read "
                                     f"({seen}); not resent. `vmctl resume` re-checks it", retries=retries,
                                     correlation_id=cid)
                    else:
                        self._watch(step, Accepted(None, None, cid, "", {}), retries,
                                    attached=f"the reply to the request was lost ({last}); the VM shows it landed "
                                             f"({seen}): watching the VM instead of sending again")
                    return
                retries += 1
                wait = exc.retry_after or min(30.0, 2.0 ** attempt)
                self.journal.write("retry", index=step.index, vm=vm.id, reason=last, wait=wait, correlationId=cid,
                                   seen=seen)
                self.stop.wait(wait)
                continue
            except ActionError as exc:
                self._finish(step, "failed", str(exc), retries=retries, correlation_id=cid)
                return
            except VmctlError as exc:
                self._finish(step, "failed", exc.message, retries=retries, correlation_id=cid)
                return
            self.journal.write("accepted", index=step.index, vm=vm.id, correlationId=acc.correlation_id,
                               clientRequestId=acc.client_request_id, statusUrl=acc.status_url,
                               rateLimit=acc.headers)
            self._watch(step, acc, retries)
            return
        self._finish(step, "failed", f"gave up after {retries} attempts: {last}", retries=retries)

    def _landed(self, step: Step) -> tuple[str, str]:
        """After a lost reply: "landed" (an operation runs on the VM), "done" (the VM is at the target),
        "not-landed" (no sign of it: sending again is safe), or "unknown" (the VM cannot be read).

        Compute registers an operation (provisioning Updating, a transitional power state) before it
        answers 202. That its instance view shows it at once is not established, so "not-landed"
        needs two reads `poll_interval` apart that both show nothing."""
        verdict, seen = self._look(step)
        if verdict == "not-landed" and not self.stop.wait(self.poll_interval):
            verdict, seen = self._look(step)
        return verdict, seen

    def _look(self, step: Step) -> tuple[str, str]:
        vm = step.vm
        try:
            self.pacer.acquire(vm.subscription_id, ["reads", "LowCostGet"])
            st = self.client.instance_view(vm.subscription_id, vm.resource_group, vm.name, quick=True)
        except Exception as exc:  # noqa: BLE001 - recorded in the outcome; nothing is resent
            return "unknown", str(exc)
        seen = f"power {st.power_state}, provisioning {st.provisioning_state or '?'}"
        if vm_busy(st.power_state, st.provisioning_state):
            return "landed", seen
        if at_target(step.action, st.power_state, st.provisioning_state):
            return "done", seen
        return "not-landed", seen

    def _watch(self, step: Step, acc: Accepted, retries: int, attached: str = "") -> None:
        now = self.clock()
        if acc.status_url is None and not attached:  # finished synchronously (200)
            self._succeeded(step, acc.correlation_id, retries, 0.0)
            return
        # the service's Retry-After is news too: contact_timeout counts from when it lets us ask
        op = _Op(step, acc, now, now + self.opts.timeout, now, retries, last_contact=now + (acc.retry_after or 0.0),
                 last_poll=now, attached=attached)
        if not attached:
            op.next_poll = self._first_poll(op, now)
        with self._lock:
            self._inflight[step.index] = op

    # ------------------------------------------------------------------ when to poll
    def _first_poll(self, op: _Op, now: float) -> float:
        """Near the action's expected duration once one is known; before that, a few probes on a
        growing schedule and the rest at a gap that fits the read budget. Never before the
        service's Retry-After."""
        action = op.step.action or ""
        floor = op.accepted.retry_after or 0.0
        expected = self._durations.first_poll(action)
        if expected is not None:  # never later than max_gap: contact_timeout must not pass unpolled
            return min(op.started + max(expected, floor), now + max(floor, self.max_gap))
        with self._lock:
            probes = self._probes.get(action, 0)
            if probes < PROBES:
                self._probes[action] = probes + 1
                op.probe = True
        if op.probe:
            return now + max(floor, self._probe_gap(0))
        return now + max(floor, self._spread_gap(op.step.vm.subscription_id, self.poll_interval))

    def _probe_gap(self, polls: int) -> float:
        """A fifth of the poll interval, growing by half each time, up to the poll interval."""
        return min(self.poll_interval, self.poll_interval / 5 * 1.5 ** polls)

    def _spread_gap(self, sub: str, base: float) -> float:
        """`base`, or longer when the operations that keep polling in `sub` (those polled at least
        once, and those whose action's duration is not known yet) would otherwise need more than
        READ_SHARE of the read budget's refill beyond the tokens in the bucket now: then each
        waits its turn. Operations waiting for their first poll at the expected duration draw
        nothing until then."""
        with self._lock:
            polling = sum(1 for o in self._inflight.values() if o.step.vm.subscription_id == sub
                          and (o.polls or self._durations.expected(o.step.action or "") is None))
        spare = max(0.0, self.pacer.available(sub, "reads") * READ_SHARE)
        return min(self.max_gap, max(base, (polling - spare) / max(1e-9, self.pacer.rate("reads") * READ_SHARE)))

    def _repoll_gap(self, op: _Op) -> float:
        """An operation still running: probes keep their schedule; others are polled again after
        a twentieth of the expected duration, or later if the read budget needs it spread."""
        if op.probe and self._durations.expected(op.step.action or "") is None:
            return self._probe_gap(op.polls)
        expected = self._durations.expected(op.step.action or "")
        base = max(expected / 20, self.poll_interval / 20) if expected is not None else self.poll_interval
        return self._spread_gap(op.step.vm.subscription_id, base)

    def _learned(self, action: str, seconds: float) -> None:
        """A completion: remember its duration; operations waiting without an estimate move their
        first poll to when they are expected to end."""
        first = self._durations.expected(action) is None
        self._durations.add(action, seconds)
        if self._durations.count(action) > LEARN_RESCHEDULE:
            return
        # the estimate is still settling (a few samples): move the first polls with it
        expected = self._durations.expected(action) or seconds
        at = self._durations.first_poll(action) or expected
        now = self.clock()
        soon = now + max(expected / 20, self.poll_interval / 20)
        with self._lock:
            for o in self._inflight.values():
                if o.step.action != action or o.attached:
                    continue
                if o.polls == 0 and not o.probe:
                    o.next_poll = max(now, min(o.started + max(at, o.accepted.retry_after or 0.0),
                                               o.last_poll + self.max_gap))
                elif first and o.started + expected < o.next_poll:  # a probe past the estimate
                    o.next_poll = max(min(o.next_poll, soon), o.started + expected)

    # ------------------------------------------------------------------ watching
    def _busy(self) -> bool:
        with self._lock:
            return self._submitting or self._pending > 0 or bool(self._inflight)

    def _watch_loop(self) -> None:
        last_list: dict[str, float] = {}
        while self._busy():
            if self.abandon.is_set():
                return
            now = self.clock()
            with self._lock:
                ops = list(self._inflight.values())
            by_sub: dict[str, list[_Op]] = {}
            for op in ops:
                by_sub.setdefault(op.step.vm.subscription_id, []).append(op)
            listing: set[str] = set()
            for sub, group in by_sub.items():
                if not self._list_mode(sub, group, now):
                    continue
                listing.add(sub)
                # a pass when some operation awaiting a repoll is due, at most every MIN_LIST_GAP
                # (longer when the pages would take more than READ_SHARE of the read budget)
                due_now = any(o.next_poll <= now and not o.list_done and not o.attached for o in group)
                gap = max(MIN_LIST_GAP, self._pages(sub) / max(1e-9, self.pacer.rate("reads") * READ_SHARE))
                if due_now and now - last_list.get(sub, float("-inf")) >= gap:
                    last_list[sub] = now
                    self._list_pass(sub, group)
            due = []
            for op in ops:
                if now > op.deadline:
                    self._finish(op.step, "failed",
                                 f"timed out after {self.opts.timeout:g} s; the operation may still complete "
                                 f"(correlation id {op.accepted.correlation_id})",
                                 retries=op.retries, correlation_id=op.accepted.correlation_id)
                    continue
                if now - op.last_contact > self.contact_timeout:
                    self._finish(op.step, "unknown",
                                 f"sent, result not known: no answer about it for {self.contact_timeout:g} s "
                                 f"(last error: {op.last_error or 'none'}); `vmctl resume` re-checks it",
                                 retries=op.retries, correlation_id=op.accepted.correlation_id)
                    continue
                sub = op.step.vm.subscription_id
                if sub in listing and not op.attached and not op.list_done and now < op.last_poll + self.max_gap:
                    continue  # the listing watches it until it looks finished
                if op.next_poll <= now:
                    due.append(op)
            due.sort(key=lambda o: o.next_poll)
            # a few at a time: one request's round trip must not hold every other poll back; each
            # operation is polled by one thread, and the batch ends before the next pass
            for _ in self._pollers.map(self._poll_one, due):
                pass
            if self.abandon.is_set():
                return
            with self._lock:
                pending = [o.next_poll for o in self._inflight.values()]
            wait = 0.05 if not pending else max(0.01, min(0.25, min(pending) - self.clock()))
            self.abandon.wait(wait)

    def _poll_one(self, op: _Op) -> None:
        if not self.abandon.is_set():
            self._poll(op)

    def _pages(self, sub: str) -> int:
        """Requests one pass of the subscription's status listing costs, estimated from its size
        (the plan's count of its VMs; unknown: as many as the operations in flight)."""
        total = self.plan.totals.get(sub)
        if not total:
            with self._lock:
                total = sum(1 for o in self._inflight.values() if o.step.vm.subscription_id == sub)
        return max(1, math.ceil(total / ASSUMED_PAGE))

    def _list_mode(self, sub: str, group: list[_Op], now: float) -> bool:
        """The listing is cheaper than the polls it replaces (of operations due, or polled and still
        running), and has not failed lately."""
        waiting = sum(1 for o in group if (o.polls or o.next_poll <= now) and not o.list_done and not o.attached)
        return waiting > max(LIST_THRESHOLD, LIST_ADVANTAGE * self._pages(sub)) and \
            now - self._list_failed.get(sub, float("-inf")) > LIST_FALLBACK

    def _list_pass(self, sub: str, group: list[_Op]) -> None:
        if not self.pacer.acquire(sub, ["reads", "HighCostGet"], n=self._pages(sub)):
            return
        try:
            current = snapshot(self.client, [sub])
        except Exception as exc:  # noqa: BLE001 - the listing failing must not stop the polls
            self._list_failed[sub] = self.clock()
            self.journal.write("list-failed", subscription=sub, error=str(exc), fallback="polling each operation")
            for op in group:
                op.next_poll = min(op.next_poll, self.clock())
            return
        now = self.clock()
        for op in group:
            vm = current.get(op.step.vm.key)
            if vm is None:
                continue
            busy = vm_busy(vm.power_state, vm.provisioning_state)
            if busy:
                op.last_contact, op.seen_busy = now, True  # visibly running: still in touch
            # settled (at the target or not: another request may have preempted ours), or failed:
            # the operation's own status says how it ended
            if vm.provisioning_state.lower() == "failed" or (vm.power_state != "unknown" and not busy):
                op.list_done = True
                op.next_poll = now

    def _poll_failed(self, op: _Op, exc: Exception) -> None:
        """A failed poll decides nothing: back off, refresh the credential after a 401, ask the VM."""
        op.poll_errors += 1
        op.last_error = str(exc)
        op.last_poll = self.clock()
        if isinstance(exc, CredentialError):
            self.client.refresh_credential()
        op.next_poll = self.clock() + min(30.0, self.poll_interval * 2 ** min(op.poll_errors - 1, 5))

    def _poll(self, op: _Op) -> None:
        if op.attached or op.poll_errors >= POLL_ERRORS_BEFORE_STATE:
            self._poll_state(op)
            return
        sub = op.step.vm.subscription_id
        self.pacer.acquire(sub, ["reads", "GetOperation"])
        try:
            st: OperationStatus = self.client.operation_status(
                sub, op.accepted.status_url or "", on_headers=lambda h: self.pacer.observe(sub, h))
        except ThrottledError as exc:
            self.pacer.penalize(sub, ["reads"], exc.retry_after)
            op.next_poll = self.clock() + exc.retry_after
            return
        except Exception as exc:  # noqa: BLE001 - one failed poll is not an outcome
            self._poll_failed(op, exc)
            return
        op.poll_errors = 0
        op.last_contact = op.last_poll = self.clock()
        status = st.status.lower()
        duration = self.clock() - op.started
        if status == "succeeded":  # a failed or preempted one may end early: not a duration to expect
            self._learned(op.step.action or "", st.duration if st.duration is not None else duration)
        if status == "succeeded":
            with self._lock:
                self._inflight.pop(op.step.index, None)
            self._succeeded(op.step, op.accepted.correlation_id, op.retries, duration)
        elif status == "failed":
            reason = f"({st.error_code}) {st.error_message}" if st.error_code else f"operation {st.status}"
            self._finish(op.step, "failed", reason, retries=op.retries, correlation_id=op.accepted.correlation_id,
                         duration=duration)
        elif status == "canceled":
            # Azure ended it for a more recent request on the VM (OperationPreempted): someone else
            # acted on it, so vmctl's intent was not carried out; verify shows where the VM ended
            error = f"({st.error_code}) {st.error_message}" if st.error_code else "(Canceled)"
            self._finish(op.step, "preempted", f"{error} Another request on this VM superseded vmctl's; the "
                         "Activity Log names who sent it", retries=op.retries,
                         correlation_id=op.accepted.correlation_id, duration=duration)
        else:
            op.list_done = False  # still running: back to the listing's watch
            op.polls += 1
            op.next_poll = self.clock() + max(st.retry_after or 0.0, self._repoll_gap(op))
            op.last_contact = max(op.last_contact, self.clock() + (st.retry_after or 0.0))

    def _poll_state(self, op: _Op) -> None:
        """Decide from the VM's own state: for an operation attached after a lost reply, or one whose
        status polls keep failing (then a poll of the operation is tried again next time)."""
        try:
            self._read_state(op)
        finally:
            if not op.attached:
                op.poll_errors = POLL_ERRORS_BEFORE_STATE - 1  # the next poll asks the operation again

    def _read_state(self, op: _Op) -> None:
        step, sub = op.step, op.step.vm.subscription_id
        by_state_only = bool(op.attached)
        self.pacer.acquire(sub, ["reads", "LowCostGet"])
        try:
            st = self.client.instance_view(sub, step.vm.resource_group, step.vm.name,
                                           on_headers=lambda h: self.pacer.observe(sub, h), quick=True)
        except ThrottledError as exc:
            self.pacer.penalize(sub, ["reads", "LowCostGet"], exc.retry_after)
            op.next_poll = self.clock() + exc.retry_after
            return
        except Exception as exc:  # noqa: BLE001 - one failed read is not an outcome
            self._poll_failed(op, exc)
            return
        now = self.clock()
        op.last_poll = now
        duration = now - op.started
        cid = op.accepted.correlation_id
        if vm_busy(st.power_state, st.provisioning_state):
            op.seen_busy = True
            op.last_contact = now  # an operation visibly runs: still in touch
            op.next_poll = now + self.poll_interval
            return
        if at_target(step.action, st.power_state, st.provisioning_state) or \
                (op.seen_busy and step.action == "restart" and st.power_state == "running"
                 and st.provisioning_state.lower() != "failed"):
            with self._lock:
                self._inflight.pop(step.index, None)
            self.journal.write("confirmed-by-state", index=step.index, vm=step.vm.id, correlationId=cid,
                               power=st.power_state, provisioning=st.provisioning_state,
                               why=op.attached or f"the operation's status could not be read: {op.last_error}")
            self._succeeded(step, cid, op.retries, duration)
            return
        if by_state_only and op.seen_busy:
            self._finish(step, "failed", f"the operation ended with the VM {st.power_state} (provisioning "
                         f"{st.provisioning_state or '?'}), not {TARGET.get(step.action or '', '?')}; {op.attached}",
                         retries=op.retries, correlation_id=cid, duration=duration)
            return
        # settled, and the state proves nothing (off target, or a restart never seen running): this
        # is no news about the operation, so contact_timeout still runs towards `unknown`
        op.next_poll = now + self.poll_interval

    def _succeeded(self, step: Step, cid: str, retries: int, duration: float) -> None:
        if self.opts.post_hook and step.action in ("start", "restart", "performMaintenance"):
            with self._lock:
                self._pending += 1
            self._futures.append(self._posts.submit(self._post_hook, step, cid, retries, duration))
            return
        self._finish(step, "succeeded", "", retries=retries, correlation_id=cid, duration=duration)

    def _post_hook(self, step: Step, cid: str, retries: int, duration: float) -> None:
        try:
            res = run_hook(self.opts.post_hook or "", step.vm, step.action or "", "post", self.opts.hook_timeout,
                           cancel=self.abandon, extra_env=self.opts.hook_env)
            self.journal.write("hook", index=step.index, vm=step.vm.id, phase="post", ok=res.ok,
                               outputBytes=res.output_bytes, truncated=res.truncated,
                               returncode=res.returncode, output=res.output)
            if res.ok:
                self._finish(step, "succeeded", "", retries=retries, correlation_id=cid, duration=duration)
            else:
                self._finish(step, "failed", f"{step.action} succeeded but the health check failed: {res.reason}",
                             retries=retries, correlation_id=cid, duration=duration)
        finally:
            with self._lock:
                self._pending -= 1

    # ------------------------------------------------------------------ outcomes
    def _finish(self, step: Step, status: OutcomeStatus, reason: str, *, retries: int = 0, correlation_id: str | None = None,
                duration: float | None = None, skip_code: SkipCode | None = None) -> None:
        out = Outcome(step.index, status, reason, retries, correlation_id,
                      round(duration, 2) if duration is not None else None, step.path)
        held = False

        def release_hold() -> None:
            nonlocal held
            held = step.index in self._held
            self._held.discard(step.index)

        if not self._book(step, out, skip_code, release_hold):
            return
        if held:
            if self._sem is not None:
                self._sem.release()
        if self.on_outcome:
            self.on_outcome(step, out)

    def _abandon_rest(self, acting: list[Step]) -> None:
        with self._lock:
            flying = list(self._inflight.values())
        for op in flying:
            self._finish(op.step, "in-flight",
                         f"still running when the wait was abandoned (correlation id {op.accepted.correlation_id}); "
                         "`vmctl resume` re-reads its state", retries=op.retries,
                         correlation_id=op.accepted.correlation_id)
        for s in acting:
            if s.index not in self.outcomes:
                self._finish(s, "cancelled", "interrupted before it finished; `vmctl resume` continues it")
