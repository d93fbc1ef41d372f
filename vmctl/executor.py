"""Runs a Plan through a cloud client: bounded in-flight operations, pacing, retries of retryable
errors only, hooks, cancellation. Every step ends with an Outcome; every event goes to the journal.
Never prints, never re-plans.

Shape: submitter threads (at most `parallel` steps in flight, hooks included) send each POST and
move on; one watcher (the calling thread) polls the operations at the interval the service asks
for (Retry-After), else `poll_interval`. With many operations in flight in a subscription it
reads the subscription's status listing (one request per page for all of them) and polls an
operation only once its VM looks finished, which keeps polls inside the read budget.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .cloud import Accepted, ActionError, FleetClient, OperationStatus, RetryableError, ThrottledError
from .errors import VmctlError
from .hooks import run_hook
from .inventory import current_state, snapshot
from .journal import Journal
from .pacing import Pacer
from .planner import TRANSITIONAL, Plan, Step

MAX_ATTEMPTS = 6
MAX_THROTTLED = 30       # 429s: the service pacing us, not a failed attempt; bounded separately
LIST_THRESHOLD = 8        # operations in flight in one subscription before the status listing is used
MAX_POLL_GAP = 60.0       # in list mode, still poll each operation at least this often
MIN_LIST_GAP = 0.5        # seconds between two status-listing passes of one subscription
POLL_ERRORS_TOLERATED = 5
HIBERNATE_FAILS = {"hibernation-not-enabled", "hibernation-needs-running"}


@dataclass
class Outcome:
    index: int
    status: str               # succeeded | failed | preempted | skipped | cancelled | in-flight
    reason: str = ""
    retries: int = 0
    correlation_id: str | None = None
    duration: float | None = None
    path: str = ""
    after: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "status": self.status, "reason": self.reason, "retries": self.retries,
                "correlationId": self.correlation_id, "duration": self.duration, "path": self.path}


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


@dataclass
class Resumed:
    """An operation a previous run sent and did not see finish: watch it instead of sending again."""
    status_url: str | None
    correlation_id: str
    started: float = field(default_factory=time.monotonic)


class Executor:
    def __init__(
        self, client: FleetClient, plan: Plan, journal: Journal, pacer: Pacer, *, poll_interval: float = 5.0,
        stop: threading.Event | None = None, abandon: threading.Event | None = None,
        on_outcome: Callable[[Step, Outcome], None] | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.plan, self.journal, self.pacer = client, plan, journal, pacer
        self.opts = plan.options
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.abandon = abandon or threading.Event()
        self.on_outcome = on_outcome
        self.clock = clock
        self.outcomes: dict[int, Outcome] = {}
        self._lock = threading.Lock()
        self._inflight: dict[int, _Op] = {}
        self._sem = threading.BoundedSemaphore(max(1, self.opts.parallel))
        self._held: set[int] = set()
        self._pending = 0          # submit or post-hook tasks not yet finished
        self._submitting = True

    # ------------------------------------------------------------------ public
    def run(self, only: list[int] | None = None, resumed: dict[int, Resumed] | None = None) -> dict[int, Outcome]:
        """Execute the acting steps (or the `only` ones); skipped steps get their outcome first."""
        self._submitting = True
        todo = [s for s in self.plan.steps if only is None or s.index in only]
        for s in todo:
            if not s.acts:
                # --hibernate-fallback fail: a VM that was asked to hibernate and cannot has failed
                status = "failed" if s.skip in HIBERNATE_FAILS else "skipped"
                self._finish(s, status, s.detail, skip_code=s.skip)
        for idx, r in (resumed or {}).items():
            step = self.plan.steps[idx]
            self._sem.acquire()
            self._held.add(idx)
            self._watch(step, Accepted(r.status_url, None, r.correlation_id, "", {}), retries=0)
        acting = [s for s in todo if s.acts and s.index not in (resumed or {})]
        workers = ThreadPoolExecutor(max_workers=max(1, self.opts.parallel), thread_name_prefix="vmctl-submit")
        self._posts = ThreadPoolExecutor(max_workers=max(1, min(self.opts.parallel, 8)), thread_name_prefix="vmctl-post")
        feeder = threading.Thread(target=self._feed, args=(acting, workers), name="vmctl-feed", daemon=True)
        feeder.start()
        try:
            self._watch_loop()
        finally:
            workers.shutdown(wait=not self.abandon.is_set(), cancel_futures=True)
            self._posts.shutdown(wait=not self.abandon.is_set(), cancel_futures=True)
        if self.abandon.is_set():
            self._abandon_rest(acting)
        return self.outcomes

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

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
                while not self._sem.acquire(timeout=0.2):
                    if self.stop.is_set():
                        break
                if self.stop.is_set():
                    for rest in acting[i:]:
                        self._finish(rest, "cancelled", "interrupted before it started; `vmctl resume` continues it")
                    return
                with self._lock:
                    self._held.add(step.index)
                    self._pending += 1
                workers.submit(self._submit, step)
        finally:
            self._submitting = False

    def _submit(self, step: Step) -> None:
        try:
            self._submit_one(step)
        except Exception as exc:  # noqa: BLE001 - every step must end with an outcome
            self._finish(step, "failed", f"internal error: {exc!r}")
        finally:
            with self._lock:
                self._pending -= 1

    def _submit_one(self, step: Step) -> None:
        vm, opts = step.vm, self.opts
        if opts.pre_hook:
            res = run_hook(opts.pre_hook, vm, step.action or "", "pre", opts.hook_timeout)
            self.journal.write("hook", index=step.index, vm=vm.id, phase="pre", ok=res.ok,
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
                    on_headers=lambda h, sub=vm.subscription_id: self.pacer.observe(sub, h))
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
                retries += 1
                last = str(exc)
                wait = exc.retry_after or min(30.0, 2.0 ** attempt)
                self.journal.write("retry", index=step.index, vm=vm.id, reason=last, wait=wait, correlationId=cid)
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

    def _watch(self, step: Step, acc: Accepted, retries: int) -> None:
        now = self.clock()
        if acc.status_url is None:  # finished synchronously (200)
            self._succeeded(step, acc.correlation_id, retries, 0.0)
            return
        first = min(acc.retry_after or self.poll_interval, self.poll_interval)
        op = _Op(step, acc, now, now + self.opts.timeout, now + first, retries)
        with self._lock:
            self._inflight[step.index] = op

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
            for sub, group in by_sub.items():
                if len(group) <= LIST_THRESHOLD:
                    continue
                # a pass when some operation is due for a look (its Retry-After, else poll_interval),
                # at most every MIN_LIST_GAP: one request per page answers for all of them
                due_now = any(o.next_poll <= now and not o.list_done for o in group)
                if due_now and now - last_list.get(sub, float("-inf")) >= MIN_LIST_GAP:
                    last_list[sub] = now
                    self._list_pass(sub, group)
                    for o in group:
                        if not o.list_done and o.next_poll <= now:
                            o.next_poll = now + (o.accepted.retry_after or self.poll_interval)
            due = []
            for op in ops:
                if now > op.deadline:
                    self._finish(op.step, "failed",
                                 f"timed out after {self.opts.timeout:g} s; the operation may still complete "
                                 f"(correlation id {op.accepted.correlation_id})",
                                 retries=op.retries, correlation_id=op.accepted.correlation_id)
                    continue
                in_list_mode = len(by_sub[op.step.vm.subscription_id]) > LIST_THRESHOLD
                if in_list_mode and not op.list_done and now < op.started + MAX_POLL_GAP and op.next_poll <= now:
                    continue
                if op.next_poll <= now:
                    due.append(op)
            for op in due:
                self._poll(op)
                if self.abandon.is_set():
                    return
            with self._lock:
                pending = [o.next_poll for o in self._inflight.values()]
            wait = 0.05 if not pending else max(0.01, min(0.25, min(pending) - self.clock()))
            self.abandon.wait(wait)

    def _list_pass(self, sub: str, group: list[_Op]) -> None:
        if not self.pacer.acquire(sub, ["reads", "HighCostGet"]):
            return
        try:
            current = snapshot(self.client, [sub])
        except (VmctlError, RetryableError, ThrottledError):
            return  # fall back to polling each operation
        now = self.clock()
        for op in group:
            vm = current.get(op.step.vm.key)
            if vm is None:
                continue
            power, prov = vm.power_state, vm.provisioning_state.lower()
            # settled (at the target or not: another request may have preempted ours), or failed:
            # the operation's own status says how it ended
            if prov == "failed" or (power not in TRANSITIONAL and power != "unknown" and prov != "updating"):
                op.list_done = True
                op.next_poll = now

    def _poll(self, op: _Op) -> None:
        sub = op.step.vm.subscription_id
        self.pacer.acquire(sub, ["reads"])
        try:
            st: OperationStatus = self.client.operation_status(
                sub, op.accepted.status_url or "", on_headers=lambda h: self.pacer.observe(sub, h))
        except ThrottledError as exc:
            self.pacer.penalize(sub, ["reads"], exc.retry_after)
            op.next_poll = self.clock() + exc.retry_after
            return
        except (RetryableError, VmctlError) as exc:
            op.poll_errors += 1
            if op.poll_errors >= POLL_ERRORS_TOLERATED:
                self._finish(op.step, "failed", f"lost track of the operation: {exc}", retries=op.retries,
                             correlation_id=op.accepted.correlation_id)
            else:
                op.next_poll = self.clock() + self.poll_interval
            return
        op.poll_errors = 0
        status = st.status.lower()
        duration = self.clock() - op.started
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
            op.next_poll = self.clock() + (st.retry_after if st.retry_after else self.poll_interval)

    def _succeeded(self, step: Step, cid: str, retries: int, duration: float) -> None:
        if self.opts.post_hook and step.action in ("start", "restart", "performMaintenance"):
            with self._lock:
                self._pending += 1
            self._posts.submit(self._post_hook, step, cid, retries, duration)
            return
        self._finish(step, "succeeded", "", retries=retries, correlation_id=cid, duration=duration)

    def _post_hook(self, step: Step, cid: str, retries: int, duration: float) -> None:
        try:
            res = run_hook(self.opts.post_hook or "", step.vm, step.action or "", "post", self.opts.hook_timeout)
            self.journal.write("hook", index=step.index, vm=step.vm.id, phase="post", ok=res.ok,
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
    def _finish(self, step: Step, status: str, reason: str, *, retries: int = 0, correlation_id: str | None = None,
                duration: float | None = None, skip_code: str | None = None) -> None:
        with self._lock:
            if step.index in self.outcomes:
                return
            self._inflight.pop(step.index, None)
            out = Outcome(step.index, status, reason, retries, correlation_id,
                          round(duration, 2) if duration is not None else None, step.path)
            self.outcomes[step.index] = out
            held = step.index in self._held
            self._held.discard(step.index)
        self.journal.write("outcome", vm=step.vm.id, skipCode=skip_code, **out.to_json())
        if held:
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
