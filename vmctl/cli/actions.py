"""`vmctl stop|deallocate|start|restart`: select -> before snapshot -> plan -> show -> confirm ->
execute -> verify -> report. One flow for every action."""

from __future__ import annotations

import inspect
import json
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, TypedDict

import typer

if TYPE_CHECKING:  # annotations only: the CLI imports the core lazily so that --help starts fast
    from ..cloud import FleetClient
    from ..config import Config
    from ..journal import Record
    from ..models import Outcome, Plan, Step
    from ..pacing import Pacer
    from ..render import Output
    from ..report import Report
    from ..run import ProgressModel, ProgressView

from ._common import (
    AllSubscriptions,
    AllVms,
    ArmEndpoint,
    Cloud,
    Common,
    ConfigPath,
    Debug,
    ExcludeTags,
    FleetSource,
    Groups,
    Ids,
    IncludeProduction,
    Locations,
    ManagementGroup,
    Names,
    OutputFormat,
    PowerStates,
    Query,
    SelectionArgs,
    Subscriptions,
    Tags,
    Verbose,
    handle_errors,
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and exit: 0, or 4 when a guard would refuse. Sends no write.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Confirm without a prompt (required without a terminal). Never includes production by itself.")]
PlanOut = Annotated[Optional[Path], typer.Option("--plan-out", metavar="PATH", help="Save the plan as JSON.")]
JournalPath = Annotated[Optional[Path], typer.Option("--journal", metavar="PATH", help="Run journal (JSONL). Default: a new file under ~/.local/state/vmctl/runs.")]
ReportPath = Annotated[Optional[Path], typer.Option("--report", metavar="PATH", help="Write the report: .md for Markdown, .json for JSON.")]
Ticket = Annotated[Optional[str], typer.Option("--ticket", metavar="ID", help="Change-ticket label recorded in the journal and report.")]
MaxTargets = Annotated[Optional[int], typer.Option("--max-targets", metavar="N", help="Refuse plans acting on more VMs (default 50, or the config's).")]
MaxPercent = Annotated[Optional[float], typer.Option("--max-percent", metavar="PCT", help="Refuse plans acting on more than this % of a subscription's VMs.")]
Parallel = Annotated[Optional[int], typer.Option("--parallel", metavar="N", help="At most N operations in flight, hooks included (default: no fixed cap; Azure's rate limits set the pace).")]
Timeout = Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Seconds one VM's operation may take before it is reported failed.")]
PreHook = Annotated[Optional[str], typer.Option("--pre-hook", metavar="CMD", help="Command run before each VM's action (drain); non-zero skips the VM.")]
PostHook = Annotated[Optional[str], typer.Option("--post-hook", metavar="CMD", help="Command run after start/restart (health check); non-zero fails the VM.")]
EvidenceWait = Annotated[str, typer.Option("--evidence-wait", metavar="DURATION", help="How long to wait for the Activity Log's record of each operation (it lags by minutes).")]
NoEvidenceWait = Annotated[bool, typer.Option("--no-evidence-wait", help="Do not wait for Activity Log evidence (fetch it later: vmctl evidence --journal).")]
HookTimeout = Annotated[float, typer.Option("--hook-timeout", metavar="SECONDS", help="Seconds a hook may run (default 300: Azure's graceful-shutdown window).")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", metavar="arm|batch|auto", help="deallocate and start: arm (one request per VM), batch (ComputeSchedule, up to 100 VMs per request) or auto (the default, or the config's execution.engine: batch from execution.batch_threshold acting VMs). Other actions run on ARM.")]
HookEnv = Annotated[list[str], typer.Option("--hook-env", metavar="NAME", help="Pass this environment variable to hooks (repeatable); hooks otherwise get only PATH, HOME, locale and the VMCTL_* variables.")]


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _ask(prompt: str) -> str:
    return str(typer.prompt(prompt, default="", show_default=False, err=True))


SIGNAL_EXIT: dict[int, int] = {signal.SIGINT.value: 130, signal.SIGTERM.value: 143}  # errors.INTERRUPTED, errors.TERMINATED


class Signals:
    """SIGINT and SIGTERM for one command, from its first request to its report.

    Until `arm` (planning, the confirmation prompt) nothing has been sent and no journal exists: a
    signal ends the process at once with 130 (SIGINT) or 143 (SIGTERM), without waiting for the
    inventory's reads (a throttled read may be sleeping in a retry). From `arm` on, the run owns the
    journal: the first signal sets `stop` (no new operation starts, those in flight finish, the
    evidence wait ends), a second sets `abandon` (stop waiting for those in flight); the run then
    ends by itself, the report is written and the command exits with the first signal's code.
    Used as a context manager; handlers are only installed on the main thread."""

    def __init__(self) -> None:
        self.stop, self.abandon = threading.Event(), threading.Event()
        self.signum: int | None = None
        self.count = 0
        self.armed = False
        self.phase = "planning"          # run.Phase once armed; "report" while the report is written
        self.in_flight: Callable[[], int] = lambda: 0
        self.interrupted_in = ""         # the phase the first signal arrived in
        self._old: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int | None:
        return SIGNAL_EXIT.get(self.signum) if self.signum else None

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT}
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def arm(self) -> None:
        """From here on the run's journal must stay exact: signals set flags, never raise."""
        self.armed = True
        self.phase = "execution"

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        self.signum = self.signum or signum
        self.interrupted_in = self.interrupted_in or self.phase
        if not self.armed:
            try:
                sys.stdout.flush()
            except Exception:  # noqa: BLE001 - reentrant (the signal came mid-write) or closed: exit anyway
                pass
            _err(f"\ninterrupted ({signal.Signals(signum).name}) while {self.phase}: no request was sent, "
                 "nothing was changed and no journal was written.")
            os._exit(SIGNAL_EXIT[signum])
        name = signal.Signals(signum).name
        if self.count == 1:
            self.stop.set()
            if self.phase == "execution":
                _err(f"\nstopping: no new operations ({name}); waiting for {self.in_flight()} in flight to finish "
                     "(press Ctrl-C again to stop waiting)")
            elif self.phase in ("verify", "evidence"):
                _err(f"\nstopping: not waiting for more Activity Log evidence ({name}); writing the journal and "
                     "the report")
            else:
                _err(f"\ninterrupted ({name}): finishing the report first")
        elif self.phase == "execution" and not self.abandon.is_set():
            self.abandon.set()
            _err(f"\nstopping ({name}) again: not waiting for the {self.in_flight()} in flight; they are "
                 "journaled as in-flight and `vmctl resume` watches them")


def _err(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (RuntimeError, OSError):  # a signal arrived while the main thread was writing stderr
        pass


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(v: ProgressView, width: int | None = None) -> str:
    """Counters (done / in flight / failed / queued), rate and ETA (none before the first operation
    ends), elapsed: within `width` columns, the elapsed time, then the rate are left out; a value
    is never cut."""
    rate = f"{v.rate:.1f}/min" if v.rate is not None else "-/min"
    eta = "ETA -" if v.eta is None else ("ETA any moment" if v.eta < 1 and v.in_flight + v.queued else
                                         f"ETA {_clock(v.eta)}")
    counts = f"{v.done}/{v.total} done, {v.in_flight} in flight, {v.failed} failed, {v.queued} queued"
    variants = [f"{counts}  {rate}  {eta}  {_clock(v.elapsed)} elapsed", f"{counts}  {rate}  {eta}",
                f"{counts}  {eta}"]
    return next((t for t in variants if width is None or len(t) <= width), variants[-1])


def evidence_text(missing: int, total: int, left: float) -> str:
    return f"evidence: {missing} of {total} operations not in the Activity Log yet ({_clock(left)} left)"


class RunDisplay:
    """What the operator sees while a run executes, and its evidence wait. Thread-safe.

    On a terminal (stderr is one, NO_COLOR unset): one live line updated in place (Rich), the
    counters and ETA while operations run, then the evidence wait's status; permanent lines only
    for failed VMs and messages. Otherwise one line per VM outcome, and while nothing else is
    printed, at most one status line per `interval` seconds (a minute of the run's time)."""

    def __init__(self, verb: str, *, interval: float, parallel: int, tty: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.verb, self.interval, self.parallel, self.tty, self.clock = verb, interval, parallel, tty, clock
        self.lock = threading.RLock()
        self.model: ProgressModel | None = None
        self.in_flight: Callable[[], int] = lambda: 0
        self.phase = "execution"
        self.evidence: tuple[int, int, float, float] | None = None   # missing, total, left, at
        self._evidence_said = False  # off a terminal the first round's status is always shown
        self.last_line = clock()
        self.live: Any = None
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the RunUI callbacks
    def say(self, message: str) -> None:
        with self.lock:
            self._line(message)

    def started(self, todo: int, in_flight: Callable[[], int]) -> None:
        with self.lock:
            from ..run import ProgressModel

            self.model = ProgressModel(todo, self.parallel, self.clock())
            self.in_flight = in_flight
            if self.tty and todo:
                from rich.console import Console
                from rich.live import Live

                self.live = Live(console=Console(stderr=True), get_renderable=self._render, transient=True,
                                 refresh_per_second=4, redirect_stdout=False)
                self.live.start()
        self._ticker = threading.Thread(target=self._tick, name="vmctl-progress", daemon=True)
        self._ticker.start()

    def outcome(self, step: Step, outcome: Outcome) -> None:
        from ..models import FAILED_OUTCOMES

        if not step.acts or self.model is None:
            return
        with self.lock:
            failed = outcome.status in FAILED_OUTCOMES
            self.model.finished(failed, outcome.duration)
            finished = self.model.done + self.model.failed
            if self.live is None or failed:
                dur = f"{outcome.duration:.1f}s" if outcome.duration is not None else "-"
                reason = f"  {outcome.reason}" if outcome.reason else ""
                self._line(f"[{finished:>{len(str(self.model.total))}}/{self.model.total}] {outcome.status:<9} "
                           f"{step.vm.resource_group}/{step.vm.name} {step.action} {dur}{reason}")

    def set_phase(self, phase: str) -> None:
        with self.lock:
            if self.phase == "execution" and phase != "execution" and self.model is not None:
                v = self.model.view(self.clock())
                self._line(f"{self.verb}: {v.done} done, {v.failed} failed, {v.in_flight} in flight, "
                           f"{v.queued} not started, in {_clock(v.elapsed)}")
            self.phase = phase

    def evidence_round(self, missing: int, total: int, left: float) -> None:
        with self.lock:
            self.evidence = (missing, total, left, self.clock())
            first = not self._evidence_said
            if self.live is None and missing and (first or self.clock() - self.last_line >= self.interval):
                self._evidence_said = True
                self._line(evidence_text(missing, total, left))

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self.lock:
            if self.live is not None:
                self.live.stop()
                self.live = None

    # -- inside
    def _line(self, message: str) -> None:
        self.last_line = self.clock()
        if self.live is not None:
            self.live.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            _err(message)

    def _status(self, width: int | None = None) -> str | None:
        now = self.clock()
        if self.phase == "execution" and self.model is not None:
            head = f"{self.verb}: "
            return head + progress_text(self.model.view(now), None if width is None else width - len(head))
        if self.phase == "evidence" and self.evidence is not None:
            missing, total, left, at = self.evidence
            return evidence_text(missing, total, max(0.0, left - (now - at))) if missing else None
        return None

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        width = self.live.console.width if self.live is not None else 80
        with self.lock:
            text = self._status(width - 1) or ""
            model = self.model if self.phase == "execution" else None
        line = Text(text, no_wrap=True, overflow="ellipsis")
        room = min(40, width - 1 - len(text) - 1)
        if model is None or room < 10:
            return line
        # room to spare on a wide terminal: a bar in front of the counters, on the same line
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(1, model.total), completed=model.done + model.failed, width=room), line)
        return grid

    def _tick(self) -> None:
        while not self._done.wait(0.25):
            with self.lock:
                if self.model is not None and self.phase == "execution":
                    self.model.sample(self.in_flight(), self.clock())
                if self.live is None and self.clock() - self.last_line >= self.interval:
                    text = self._status()
                    if text:
                        self._line(text)


def run_action(
    verb: str, common: Common, sel: SelectionArgs, *, dry_run: bool, yes: bool, plan_out: Path | None,
    journal_path: Path | None, report_path: Path | None, ticket: str | None, max_targets: int | None,
    max_percent: float | None, parallel: int | None, timeout: float, pre_hook: str | None, post_hook: str | None,
    hook_timeout: float, hook_env: tuple[str, ...] = (), keep_allocation: bool = False, skip_shutdown: bool = False,
    hibernate: bool = False, engine: str | None = None, retry_count: int | None = None, retry_window: int | None = None,
    hibernate_fallback: str = "fail", wave_by: str = "update-domain", pause: float = 300.0,
    evidence_wait: float = 600.0, all_vms: bool = False, approved: Plan | None = None,
    signals: Signals | None = None,
) -> None:
    from ..cloud import make_client
    from ..errors import REFUSED, GuardRefusal, InputError
    from ..inventory import Need
    from ..journal import write_private
    from ..models import Options
    from ..planner import build_plan, plan_json
    from ..render import emit
    from ..safety import STOP_BILLED, confirm, plan_drift, stop_or_deallocate
    from ..selection import require_match
    from ..views import plan_output
    from .inventory import _setup, read_fleet

    ctx = _setup(common, all_vms=all_vms, **sel)
    cfg, fmt, selector, connection = ctx.config, ctx.fmt, ctx.selector, ctx.connection
    if hibernate_fallback != "fail" and hibernate_fallback != "deallocate":
        raise InputError(f"--hibernate-fallback '{hibernate_fallback}' is not fail or deallocate.")
    if hibernate_fallback != "fail" and not hibernate:
        raise InputError("--hibernate-fallback only applies with --hibernate.")
    # everything that can be refused is refused here, before the first request (exit 2, zero writes)
    from .. import preflight
    from ..timefmt import MAX_HOOK_TIMEOUT, MAX_TIMEOUT, parse_seconds

    timeout = parse_seconds(timeout, "--timeout", maximum=MAX_TIMEOUT)
    hook_timeout = parse_seconds(hook_timeout, "--hook-timeout", maximum=MAX_HOOK_TIMEOUT)
    preflight.check_query(common.query)
    preflight.check_writable(journal_path, "--journal", must_not_exist=True, create_parents=True)
    if ticket is not None and (not ticket.strip() or any(ord(c) < 32 for c in ticket)):
        raise InputError(f"--ticket {ticket!r} is empty or has a newline or control character.",
                         "Give the change ticket's id on one line, e.g. --ticket CHG-1234.")
    preflight.check_writable(report_path, "--report")
    preflight.check_writable(plan_out, "--plan-out")
    preflight.check_hook(pre_hook, "--pre-hook")
    preflight.check_hook(post_hook, "--post-hook")
    hook_env = preflight.check_hook_env(hook_env)
    if parallel is not None and parallel < 1:
        raise InputError("--parallel must be at least 1.")
    if max_targets is not None and max_targets < 1:
        raise InputError("--max-targets must be at least 1.")
    if max_percent is not None and not 0 < max_percent <= 100:
        raise InputError("--max-percent must be a number from 0 to 100.")
    from ..models import WaveBy

    try:
        waves = WaveBy.parse(wave_by)
    except ValueError:
        raise InputError(f"--wave-by '{wave_by}' is not update-domain, tag:KEY or none.") from None
    if engine is not None and engine not in ("arm", "batch", "auto"):
        raise InputError(f"--engine '{engine}' is not arm, batch or auto.",
                         "arm: one request per VM; batch: ComputeSchedule, up to 100 VMs per request; auto: batch "
                         "from the batch threshold up.")
    if retry_count is not None and not 0 <= retry_count <= 7:
        raise InputError(f"--retry-count {retry_count} is outside 0-7.",
                         "ComputeSchedule's retryPolicy.retryCount is 0 (one attempt) to 7.")
    if retry_window is not None and not 5 <= retry_window <= 120:
        raise InputError(f"--retry-window {retry_window} is outside 5-120 minutes.",
                         "ComputeSchedule's retryPolicy.retryWindowInMinutes is 5 to 120.")
    is_tty = interactive()
    stop_refused = False
    if verb == "stop":
        if dry_run and not keep_allocation:
            stop_refused = True  # the plan is still shown; the exit code says a guard would refuse
        else:
            verb = stop_or_deallocate(keep_allocation, is_tty, _ask)
    from ..batch import BATCH_ACTIONS, DEFAULT_RETRY, DEFAULT_THRESHOLD, EngineChoice, resolve_engine
    from ..planner import VERBS

    batch_capable = VERBS[verb] in BATCH_ACTIONS
    if engine == "batch" and not batch_capable:
        raise InputError(f"--engine batch: `vmctl {verb}` has no batch engine; ComputeSchedule runs only deallocate "
                         "(with --hibernate) and start.", f"Leave out --engine (or give --engine arm): {verb} runs on "
                         "ARM, one request per VM.")
    requested = (engine or cfg.engine) if batch_capable else "arm"
    if requested == "batch" and (pre_hook or post_hook):
        raise InputError("--pre-hook/--post-hook run per VM around its own request; the batch engine sends up to 100 "
                         "VMs in one request.", "Use --engine arm with hooks (--engine auto picks ARM when hooks are "
                         "given).")
    opts = Options(
        skip_shutdown=skip_shutdown and verb == "stop", hibernate=hibernate,
        hibernate_fallback="deallocate" if hibernate_fallback == "deallocate" else "fail",
        include_production=selector.include_production,
        max_targets=max_targets if max_targets is not None else cfg.max_targets,
        max_percent=max_percent if max_percent is not None else cfg.max_percent,
        parallel=parallel or cfg.parallel, timeout=timeout, pre_hook=pre_hook, post_hook=post_hook,
        hook_timeout=hook_timeout, hook_env=hook_env, ticket=ticket, wave_by=waves, pause=pause,
    )
    client = make_client(connection)
    pacer = make_pacer(cfg)
    needs: tuple[Need, ...] = ("maintenance", "domains") if verb == "maintenance start" else ()
    inv = read_fleet(ctx, client, needs, pacer)  # before
    if inv.selection is not None:
        require_match(inv.selection, len(inv.vms))
    if inv.source == "graph":  # Resource Graph's facts may be a minute old: what the plan acts on is re-read through ARM
        from ..sources import plan_from_graph

        plan = plan_from_graph(client, verb, inv, opts, selector, cfg, needs=needs, read_pacer=pacer)
    else:
        plan = build_plan(verb, list(inv.vms), opts, totals=inv.totals, set_sizes=inv.set_sizes)
    if batch_capable:
        choice: EngineChoice = "batch" if requested == "batch" else "arm" if requested == "arm" else "auto"
        chosen, note = resolve_engine(choice, plan.action, len(plan.acting), cfg.batch_threshold or DEFAULT_THRESHOLD,
                                      bool(pre_hook or post_hook))
        if chosen == "batch":
            count = retry_count if retry_count is not None else \
                cfg.retry_count if cfg.retry_count is not None else DEFAULT_RETRY.count
            window = retry_window if retry_window is not None else \
                cfg.retry_window if cfg.retry_window is not None else DEFAULT_RETRY.window_minutes
            plan = replace(plan, options=replace(plan.options, engine="batch", engine_note=note, retry_count=count,
                                                 retry_window=window if count else 0))
        else:
            plan = replace(plan, options=replace(plan.options, engine_note=note))
    if stop_refused:
        plan = replace(plan, refusals=plan.refusals + (STOP_BILLED.rstrip("."),))
    if plan_out:
        write_private(plan_out, json.dumps(plan_json(plan), indent=2, default=str) + "\n", flag="--plan-out")
    shown = plan_output(plan)  # views
    if approved is not None:  # vmctl apply: the fresh plan may do the approved plan's work or less, never more
        drift = plan_drift(approved, plan)
        if drift:
            emit(shown, "table", None, stream=sys.stderr)
            raise GuardRefusal(f"the fleet changed since the plan was made ({approved.created_at}): "
                               + "; ".join(drift[:5]) + (f"; and {len(drift) - 5} more" if len(drift) > 5 else "") + ".",
                               "Nothing was sent. Make a new plan (--dry-run --plan-out) and have it approved.")
    if dry_run:
        emit(shown, fmt, common.query)
        if plan.refusals:
            raise typer.Exit(REFUSED)
        if opts.skip_shutdown and plan.production_acting:
            print("A real run needs a typed confirmation on a terminal (--skip-shutdown on production).",
                  file=sys.stderr)
            if not is_tty:
                raise typer.Exit(REFUSED)  # without a terminal the real run would be refused
        return
    emit(shown, fmt if fmt in ("table", "markdown") else "table", None,
         stream=sys.stdout if fmt in ("table", "markdown") else sys.stderr)
    if not plan.acting:
        if plan.refusals:
            raise GuardRefusal("; ".join(plan.refusals) + ".")
        print("Nothing to do: no request sent.", file=sys.stderr)
        return
    from ..render.table import before_prompt  # a long plan's counts again, right above the prompt
    before_prompt(shown, is_tty and (not yes or (opts.skip_shutdown and bool(plan.production_acting))))
    if signals is not None:
        signals.phase = "waiting for confirmation"
    how = confirm(plan, yes, is_tty, _ask)
    if approved is not None and how == "yes-flag":
        how = "plan-file"  # vmctl apply: the approval was the review of the saved plan
    _execute(client, plan, cfg, fmt, common, journal_path, report_path, evidence_wait=evidence_wait, pacer=pacer,
             confirmed_by=how, signals=signals)


def make_pacer(cfg: Config) -> Pacer:
    from ..config import pace_scale
    from ..pacing import Pacer

    return Pacer(scale=pace_scale(cfg))


def evidence_seconds(text: str, skip: bool) -> float:
    from ..timefmt import parse_duration

    return 0.0 if skip else parse_duration(text, "--evidence-wait")


def _execute(client: FleetClient, plan: Plan, cfg: Config, fmt: str, common: Common, journal_path: Path | None,
             report_path: Path | None, resume_records: list[Record] | None = None,
             evidence_wait: float = 600.0, pacer: Pacer | None = None, signals: Signals | None = None,
             confirmed_by: str = "") -> None:
    """Parse-call-render: the run itself is `vmctl.run.execute`; here only the terminal's side
    (progress, messages, Ctrl-C/SIGTERM) and the report. `signals`: the command's own (armed
    here); without one the run installs its handlers for its own duration."""
    from .. import journal as jr
    from ..config import pace_scale
    from ..report import build
    from ..run import RunSettings, RunUI, execute

    if signals is None:
        with Signals() as own:
            _execute(client, plan, cfg, fmt, common, journal_path, report_path, resume_records, evidence_wait,
                     pacer, own, confirmed_by)
        return
    scale = pace_scale(cfg)
    path = journal_path or jr.default_path(plan.run_id)
    tty = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    display = RunDisplay(plan.verb, interval=max(1.0, 60.0 / scale), parallel=plan.options.parallel or max(1, len(plan.acting)), tty=tty)

    def started(todo: int, in_flight: Callable[[], int]) -> None:
        signals.in_flight = in_flight
        display.started(todo, in_flight)

    def phase(name: str) -> None:
        signals.phase = name
        display.set_phase(name)

    settings = RunSettings(poll_interval=cfg.poll_interval / scale, scale=scale, evidence_wait=evidence_wait,
                           confirmed_by=confirmed_by,
                           command=shlex.join(["vmctl", *sys.argv[1:]]))
    ui = RunUI(say=display.say, on_outcome=display.outcome, started=started, phase=phase,
               evidence_round=display.evidence_round, stopped_by=lambda: signals.name)
    signals.arm()
    try:
        result = execute(client, plan, path, pacer or make_pacer(cfg), settings, resume_records=resume_records,
                         ui=ui, stop=signals.stop, abandon=signals.abandon, endpoint=client.connection.endpoint)
    finally:
        display.close()
    signals.phase = "end"
    rep = build(result.records)
    # a signal must not cut the report: a write interrupted on a full pipe loses what was buffered,
    # so SIGINT/SIGTERM wait (pending) until it is written, then count as usual
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNAL_EXIT))
    try:
        _show_report(rep, fmt, common.query, report_path, exit_with_run=False, journal=result.path)
        sys.stdout.flush()
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, set(SIGNAL_EXIT))
    code = signals.exit_code if signals.exit_code is not None else rep["exitCode"]
    if signals.signum is not None or rep["interrupted"]:
        _next_steps(signals, rep, result.path, code)
    if code:
        raise typer.Exit(code)


PHASE_TEXT = {"execution": "running the operations", "verify": "reading the after-state",
              "evidence": "waiting for Activity Log evidence", "end": "writing the report"}


def _next_steps(signals: Signals, rep: Report, path: Path, code: int) -> None:
    """After an interruption: what happened, and the commands that continue, with the real path."""
    s = rep["summary"]
    name = signals.name or "a signal"
    where = PHASE_TEXT.get(signals.interrupted_in, signals.interrupted_in or "running")
    journal = shlex.quote(str(path))
    lines = [f"interrupted ({name}) while {where}; exit code {code}. {s['succeeded']} succeeded, "
             f"{s['failed'] + s['preempted'] + s['unknown']} failed or unknown, {s['in-flight']} in flight, "
             f"{s['cancelled'] + s['pending']} not started.",
             f"  journal:  {path}"]
    unfinished = s["in-flight"] + s["cancelled"] + s["pending"] + s["unknown"]
    if unfinished:
        lines.append(f"  continue: vmctl resume {journal}")
    elif any(v["evidence"] and not v["evidence"]["complete"] for v in rep["vms"]):
        lines.append(f"  evidence: vmctl evidence --journal {journal} --wait 10m")
    lines.append(f"  report:   vmctl report {journal}")
    for line in lines:
        _err(line)


def _show_report(rep: Report, fmt: str, query: str | None, report_path: Path | None,
                 exit_with_run: bool = True, journal: Path | None = None) -> None:
    """Write --report and show the report; `journal` is named in its hints (what to run next)."""
    from ..journal import write_private
    from ..render import emit, envelope
    from ..views import report_markdown, report_output

    def output(rep: Report) -> Output:
        return report_output(rep, str(journal) if journal else None)

    def markdown(rep: Report) -> str:
        return report_markdown(rep, str(journal) if journal else None)

    if report_path:
        if report_path.suffix.lower() == ".json":
            write_private(report_path, json.dumps(envelope(output(rep)), indent=2, default=str) + "\n", flag="--report")
        else:
            write_private(report_path, markdown(rep), flag="--report")
        print(f"report: {report_path}", file=sys.stderr)
    if fmt == "markdown" and not query:
        sys.stdout.write(markdown(rep))
    else:
        emit(output(rep), fmt, query)
    if rep["exitCode"] and exit_with_run:
        raise typer.Exit(rep["exitCode"])


# ---------------------------------------------------------------------------- the commands
class RunExtras(TypedDict, total=False):
    """What a verb's own options add to run_action's keyword arguments."""

    keep_allocation: bool
    skip_shutdown: bool
    hibernate: bool
    hibernate_fallback: str
    wave_by: str
    pause: float
    retry_count: int | None
    retry_window: int | None


def _sel(resource_group: list[str], name: list[str], ids: list[str], tag: list[str], exclude_tag: list[str],
         location: list[str], power_state: list[str], include_production: bool) -> SelectionArgs:
    return SelectionArgs(groups=resource_group, names=name, ids=ids, tags=tag, exclude_tags=exclude_tag, locations=location,
                power_states=power_state, include_production=include_production)


def _action_options(
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    all_vms: AllVms = False, dry_run: DryRun = False, yes: Yes = False, plan_out: PlanOut = None, journal: JournalPath = None,
    report: ReportPath = None, ticket: Ticket = None, max_targets: MaxTargets = None, max_percent: MaxPercent = None,
    parallel: Parallel = None, timeout: Timeout = 3600.0, pre_hook: PreHook = None, post_hook: PostHook = None,
    hook_timeout: HookTimeout = 300.0, hook_env: HookEnv = [], evidence_wait: EvidenceWait = "10m",
    no_evidence_wait: NoEvidenceWait = False, engine: EngineOpt = None,
    subscription: Subscriptions = [], all_subscriptions: AllSubscriptions = False, management_group: ManagementGroup = None,
    source: FleetSource = None, cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """The options every action command shares: this signature is their one definition."""


def action_command(verb: str, doc: str, extras: Callable[..., RunExtras] | None = None) -> Callable[..., None]:
    """A Typer command for `verb`: its own options (the parameters of `extras`, which turns them into
    run_action keyword arguments) followed by the shared ones."""
    shared = list(inspect.signature(_action_options, eval_str=True).parameters.values())
    own = list(inspect.signature(extras, eval_str=True).parameters.values()) if extras else []

    @handle_errors
    def cmd(**kw: Any) -> None:
        more = extras(**{p.name: kw.pop(p.name) for p in own}) if extras else RunExtras()
        with Signals() as signals:  # from the first request to the report: exit 130/143, journal exact
            run_action(
                verb, Common(kw["subscription"], kw["cloud"], kw["arm_endpoint"], kw["config"], kw["output"],
                             kw["query"], kw["debug"], kw["source"], kw["all_subscriptions"], kw["management_group"]),
                _sel(kw["resource_group"], kw["name"], kw["ids"], kw["tag"], kw["exclude_tag"], kw["location"],
                     kw["power_state"], kw["include_production"]),
                dry_run=kw["dry_run"], yes=kw["yes"], plan_out=kw["plan_out"], journal_path=kw["journal"],
                report_path=kw["report"], ticket=kw["ticket"], max_targets=kw["max_targets"],
                max_percent=kw["max_percent"], parallel=kw["parallel"], timeout=kw["timeout"],
                pre_hook=kw["pre_hook"], post_hook=kw["post_hook"], hook_timeout=kw["hook_timeout"],
                hook_env=tuple(kw["hook_env"]), evidence_wait=evidence_seconds(kw["evidence_wait"],
                                                                              kw["no_evidence_wait"]),
                all_vms=kw["all_vms"], engine=kw["engine"], signals=signals, **more)

    cmd.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    cmd.__doc__ = doc
    cmd.__name__ = f"{verb.replace(' ', '_')}_cmd"
    return cmd


def _stop_options(
    keep_allocation: Annotated[bool, typer.Option("--keep-allocation", help="Say that compute should stay allocated and billed (required for stop).")] = False,
    skip_shutdown: Annotated[bool, typer.Option("--skip-shutdown", help="Hard power-off without guest shutdown: emergency containment only.")] = False,
) -> RunExtras:
    return {"keep_allocation": keep_allocation, "skip_shutdown": skip_shutdown}


RetryCount = Annotated[Optional[int], typer.Option("--retry-count", metavar="N", help="Batch engine: ComputeSchedule's retries of a failed VM operation, 0-7 (default 3, or the config's execution.retry_count).")]
RetryWindow = Annotated[Optional[int], typer.Option("--retry-window", metavar="MINUTES", help="Batch engine: the last retry starts within this many minutes of the request, 5-120 (default 30).")]


def _deallocate_options(
    hibernate: Annotated[bool, typer.Option("--hibernate", help="Hibernate (save memory to the OS disk); hibernation-enabled VMs only.")] = False,
    hibernate_fallback: Annotated[str, typer.Option("--hibernate-fallback", metavar="fail|deallocate", help="fail (VMs that cannot hibernate count as failed) or deallocate them plainly.")] = "fail",
    retry_count: RetryCount = None, retry_window: RetryWindow = None,
) -> RunExtras:
    return {"hibernate": hibernate, "hibernate_fallback": hibernate_fallback, "retry_count": retry_count,
            "retry_window": retry_window}


def _start_options(retry_count: RetryCount = None, retry_window: RetryWindow = None) -> RunExtras:
    return {"retry_count": retry_count, "retry_window": retry_window}


stop_cmd = action_command("stop", """Power VMs off, keeping compute allocated and BILLED (use deallocate to stop paying).

    Requires --keep-allocation: a stopped VM is still billed for compute.

    Example:

        vmctl stop -g rg-batch --tag role=worker --keep-allocation --dry-run
    """, _stop_options)
deallocate_cmd = action_command("deallocate", """Deallocate VMs: release compute so it is no longer billed.

    Temporary-disk data and dynamic public IPs are lost; capacity is not guaranteed at restart.
    Large fleets go through ComputeSchedule (--engine batch, or auto from the batch threshold):
    up to 100 VMs per request; --dry-run shows the engine and its requests.

    Example:

        vmctl deallocate --tag env=dev --dry-run --plan-out plan.json

        vmctl deallocate --tag env=dev --yes --ticket CHG-1234 --report report.md
    """, _deallocate_options)
start_cmd = action_command("start", """Start VMs (compute is allocated and billed again).

    Large fleets go through ComputeSchedule (--engine batch, or auto from the batch threshold):
    up to 100 VMs per request, with server-side retries (--retry-count, --retry-window).

    Example:

        vmctl start -g rg-web --post-hook ./healthcheck.sh --yes

        vmctl start --tag env=dev --engine batch --retry-count 5 --yes
    """, _start_options)
restart_cmd = action_command("restart", """Restart running VMs (the guest reboots; compute stays allocated).

    Example:

        vmctl restart -n 'web-*' --pre-hook ./drain.sh --post-hook ./healthcheck.sh --parallel 2 --yes
    """)
