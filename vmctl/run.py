"""The run use case: from a confirmed plan to the journal a report is built from. Never prints.

lock the VMs -> journal header (or, for `resume`, what is left to do) -> executor -> verify (the
after-state) -> evidence (Activity Log, bounded wait) -> end. What the operator should see while it
runs goes through `RunUI`; signals are the caller's (they set `stop` and `abandon`). The journal is
written once; the records come back from memory, not by reading the file again.
"""

from __future__ import annotations

import getpass
import heapq
import math
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from .cloud import FleetClient
from .evidence import collect, collected, expected_operations, record
from .executor import ASSUMED_PAGE, CONTACT_TIMEOUT, Executor, Resumed
from .inventory import snapshot
from .journal import Journal, Record, iter_type, write_private
from .locking import VmLocks
from .models import Outcome, Plan, Step
from .pacing import Pacer
from .planner import plan_json
from .resume import ACTIVITY_LOG_LAG, resume_targets


def _quiet(message: str) -> None:
    return None


Phase = Literal["execution", "verify", "evidence", "end"]


@dataclass
class RunUI:
    """How a run talks to whoever watches it: plain messages, each VM's outcome, a hook to learn
    how many operations are in flight (progress, the signal handler's message), the phase the run
    is in, each round of the evidence wait (missing, expected, seconds left) and, when `stop` is
    set, what set it (`SIGINT`, `SIGTERM`; journaled with the interruption)."""

    say: Callable[[str], None] = _quiet
    on_outcome: Callable[[Step, Outcome], None] | None = None
    started: Callable[[int, Callable[[], int]], None] = lambda todo, in_flight: None
    phase: Callable[[Phase], None] = lambda phase: None
    evidence_round: Callable[[int, int, float], None] = lambda missing, total, left: None
    stopped_by: Callable[[], str] = lambda: ""


@dataclass(frozen=True)
class RunSettings:
    poll_interval: float             # seconds between polls (already divided by the time scale)
    scale: float = 1.0               # the simulator's time scale (VMCTL_PACE_SCALE), 1 on Azure
    evidence_wait: float = 600.0     # seconds to wait for the Activity Log; 0: do not wait
    command: str = ""                # the command line, for the journal and the locks
    confirmed_by: str = ""           # how the operator said go (safety.Confirmation); "" when not asked


@dataclass
class RunResult:
    path: Path
    records: list[Record] = field(default_factory=list)  # the whole journal, in order
    interrupted: bool = False


def execute(client: FleetClient, plan: Plan, journal_path: Path, pacer: Pacer, settings: RunSettings, *,
            resume_records: list[Record] | None = None, ui: RunUI | None = None,
            stop: threading.Event | None = None, abandon: threading.Event | None = None,
            endpoint: str = "") -> RunResult:
    """Run (or resume) `plan`; the VMs it acts on are locked for the whole run (exit 4 if another
    run holds one), before the journal is even created."""
    ui = ui or RunUI()
    stop, abandon = stop or threading.Event(), abandon or threading.Event()
    locks = VmLocks.acquire([s.vm.id for s in plan.steps if s.acts], run_id=plan.run_id, command=settings.command,
                            journal=str(journal_path))
    try:
        return _locked(client, plan, journal_path, pacer, settings, resume_records, ui, stop, abandon, endpoint, locks)
    finally:
        locks.release()


def _locked(client: FleetClient, plan: Plan, path: Path, pacer: Pacer, settings: RunSettings,
            resume_records: list[Record] | None, ui: RunUI, stop: threading.Event, abandon: threading.Event,
            endpoint: str, locks: VmLocks) -> RunResult:
    only: list[int] | None = None
    resumed: dict[int, Resumed] = {}
    earlier = list(resume_records or [])
    if resume_records is None:
        journal = Journal(path)
        journal.write("run", runId=plan.run_id, command=settings.command, principal=client.principal(),
                      host=socket.gethostname(), user=getpass.getuser(), endpoint=endpoint, pid=os.getpid(),
                      confirmedBy=settings.confirmed_by)
        journal.write("plan", plan=plan_json(plan))
    else:
        journal = Journal(path, append=True)
        targets = resume_targets(client, plan, resume_records, journal, pacer,
                                 activity_log_lag=ACTIVITY_LOG_LAG / settings.scale)
        only, resumed = targets.only, targets.resumed
        journal.write("resume", command=settings.command, user=getpass.getuser(), host=socket.gethostname(),
                      steps=only, confirmedBy=settings.confirmed_by)
    journal.write("locks", vms=len(locks.vm_ids), directory=str(locks.directory),
                  stale=[x.as_record() for x in locks.stale])
    ui.say(f"journal: {path}")
    todo = [s for s in plan.steps if s.acts and (only is None or s.index in only)]
    if plan.options.engine == "batch":
        from .batch import STATUS_POLL, BatchExecutor, sent_before

        bx = BatchExecutor(client, plan, journal, pacer, poll_interval=STATUS_POLL / settings.scale,
                           state_interval=settings.poll_interval, scale=settings.scale, stop=stop, abandon=abandon,
                           on_outcome=ui.on_outcome, contact_timeout=CONTACT_TIMEOUT / settings.scale)
        ui.started(len(todo), bx.in_flight)
        bx.run(only=only, resumed=resumed, guarded=sent_before(earlier))
    else:
        ex = Executor(client, plan, journal, pacer, poll_interval=settings.poll_interval, stop=stop, abandon=abandon,
                      on_outcome=ui.on_outcome, contact_timeout=CONTACT_TIMEOUT / settings.scale)
        ui.started(len(todo), ex.in_flight)
        if plan.action == "performMaintenance":
            ex.run_waves(only=only, resumed=resumed, say=ui.say)
        else:
            ex.run(only=only, resumed=resumed)
    noted = [False]

    def note_interruption(phase: Phase) -> None:
        """Journal the interruption once, with the phase in which the run noticed it."""
        if stop.is_set() and not noted[0]:
            noted[0] = True
            journal.write("interrupted", abandoned=abandon.is_set(), phase=phase, signal=ui.stopped_by())

    note_interruption("execution")
    if not abandon.is_set():
        ui.phase("verify")
        verify(client, plan, journal, pacer)
        note_interruption("verify")
        if settings.evidence_wait > 0:
            ui.phase("evidence")
            wait_for_evidence(client, plan, journal, earlier + journal.records, settings, stop, ui.say,
                              ui.evidence_round)
            note_interruption("evidence")
    ui.phase("end")
    journal.write("end", interrupted=stop.is_set())
    journal.close()
    return RunResult(path, earlier + journal.records, stop.is_set())


def verify(client: FleetClient, plan: Plan, journal: Journal, pacer: Pacer | None = None) -> None:
    """The after-state: one status listing per subscription touched (its pages paced on the read
    budget the run's polls have been drawing on); a failed one is journaled."""
    wanted = {s.vm.key for s in plan.steps}
    states: dict[str, str] = {}
    for sub in sorted({s.vm.subscription_id for s in plan.steps}):
        if pacer is not None:
            total = plan.totals.get(sub) or sum(1 for s in plan.steps if s.vm.subscription_id == sub)
            pacer.acquire(sub, ["reads", "HighCostGet"], n=max(1, math.ceil(total / ASSUMED_PAGE)))
        try:
            states.update({key: vm.power_state for key, vm in snapshot(client, [sub]).items() if key in wanted})
        except Exception as exc:  # noqa: BLE001 - the run is done; the report says the after-state is missing
            journal.write("verify-failed", subscription=sub, error=str(exc))
    journal.write("verify", states=states)


def wait_for_evidence(client: FleetClient, plan: Plan, journal: Journal, records: list[Record],
                      settings: RunSettings, stop: threading.Event, say: Callable[[str], None],
                      on_round: Callable[[int, int, float], None] | None = None) -> list[str]:
    """Wait (bounded) for each operation's Activity Log record; journal what came. Returns the
    correlation ids still missing. `on_round(missing, expected, seconds left)` after each round of
    queries only reports: how often the Activity Log is asked depends on nothing the watcher does."""
    expected = expected_operations(records, {s.index: s.vm.subscription_id for s in plan.steps})
    if not expected:
        return []
    wait, scale = settings.evidence_wait, settings.scale
    say(f"evidence: waiting up to {wait:g} s for the Activity Log ({len(expected)} operations; it lags the "
        "operations by minutes)")

    # operations vmctl stopped watching (timed out, abandoned) may end long after: look once, don't wait
    unsettled = {r["index"] for r in iter_type(records, "outcome")
                 if r["status"] in ("in-flight", "unknown") or str(r.get("reason", "")).startswith("timed out")}
    waitable = [x for x in expected if x.index not in unsettled]
    try:
        found = collect(client, waitable, wait=wait, have=collected(records), on_round=on_round, stop=stop,
                        scale=scale)
        found = collect(client, [x for x in expected if x.index in unsettled], wait=0, have=found)
    except Exception as exc:  # noqa: BLE001 - the run is done; evidence is reported missing, not fatal
        journal.write("evidence-failed", error=str(exc))
        say(f"evidence: could not read the Activity Log: {exc}")
        return [x.correlation_id for x in expected]
    missing = record(journal, expected, found)
    if not missing:
        say(f"evidence: all {len(expected)} operations are in the Activity Log")
    if missing:
        say(f"evidence: {len(missing)} operations still missing; `vmctl evidence --journal {journal.path}` "
            "fetches them later")
    return missing


@dataclass(frozen=True)
class ProgressView:
    """What a progress display shows at one moment. `rate` (operations finished per minute) and
    `eta` (seconds) are None until an operation has finished: there is no data before that."""

    total: int
    done: int          # finished, not failed (succeeded, or skipped at run time)
    failed: int        # models.FAILED_OUTCOMES
    in_flight: int     # accepted by Azure, being watched
    queued: int        # not started yet (or in its pre-hook, or being sent)
    elapsed: float
    rate: float | None
    eta: float | None


class ProgressModel:
    """Counters and an ETA for a run's progress, from observed completions only. Pure: every call
    is given the time (`now`, seconds on any monotonic clock), so it is tested on plain data.

    `sample` takes the executor's in-flight count (call it often: an operation's start is taken as
    the first sample that saw it), `finished` each operation's end. The ETA replays what is left on
    `parallel` slots, each operation taking the mean duration observed so far: those in flight end
    at their start plus that mean, the queued ones take the slots as they free up. So it counts
    down between completions, and is 0 ("any moment") when all that is left is past the mean."""

    def __init__(self, total: int, parallel: int, now: float) -> None:
        self.total, self.parallel, self.t0 = total, max(1, parallel), now
        self.done = self.failed = self.in_flight = 0
        self.durations: list[float] = []
        self._started = 0                       # operations seen started (finished or in flight)
        self._launches: deque[float] = deque()  # when each operation in flight was first seen, oldest first

    def sample(self, in_flight: int, now: float) -> None:
        self.in_flight = max(0, min(in_flight, self.total - self.done - self.failed))
        started = self.done + self.failed + self.in_flight
        self._launches.extend([now] * max(0, started - self._started))
        self._started = max(self._started, started)
        while len(self._launches) > self.in_flight:  # those that ended: taken to be the oldest
            self._launches.popleft()

    def finished(self, failed: bool, duration: float | None) -> None:
        """One operation ended; `duration` is how long it ran (None: not known)."""
        if failed:
            self.failed += 1
        else:
            self.done += 1
        if duration is not None and duration >= 0:
            self.durations.append(duration)

    def view(self, now: float) -> ProgressView:
        finished = self.done + self.failed
        in_flight = min(self.in_flight, self.total - finished)
        queued = max(0, self.total - finished - in_flight)
        elapsed = max(0.0, now - self.t0)
        rate = finished * 60.0 / elapsed if finished and elapsed > 0 else None
        return ProgressView(self.total, self.done, self.failed, in_flight, queued, elapsed, rate,
                            self._eta(now, in_flight, queued, elapsed))

    def _eta(self, now: float, in_flight: int, queued: int, elapsed: float) -> float | None:
        finished = self.done + self.failed
        if not finished:
            return None  # no data yet
        if not queued and not in_flight:
            return 0.0
        mean = sum(self.durations) / len(self.durations) if self.durations else elapsed / finished
        launches = list(self._launches)[-in_flight:] if in_flight else []
        launches += [now] * (in_flight - len(launches))
        slots = [max(now, t + mean) for t in launches] + [now] * max(0, self.parallel - len(launches))
        heapq.heapify(slots)
        end = max(slots)
        for _ in range(queued):
            t = heapq.heappop(slots) + mean
            heapq.heappush(slots, t)
            end = max(end, t)
        return max(0.0, end - now)


def write_bundle(directory: Path, journal: Path, files: dict[str, str]) -> list[str]:
    """The attachment for a change ticket: the journal and the rendered files, each 0600 and never
    overwritten, plus SHA256SUMS (`sha256sum -c SHA256SUMS` verifies it). Returns the file names."""
    import hashlib

    from .journal import private_dir
    from .preflight import check_bundle_dir

    check_bundle_dir(directory)
    private_dir(directory, flag="--bundle")
    write_private(directory / "journal.jsonl", journal.read_bytes(), flag="--bundle", exclusive=True)
    for name, text in files.items():
        write_private(directory / name, text, flag="--bundle", exclusive=True)
    names = sorted(["journal.jsonl", *files])
    sums = "".join(f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    write_private(directory / "SHA256SUMS", sums, flag="--bundle", exclusive=True)
    return names
