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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

if TYPE_CHECKING:  # annotations only: the CLI imports the core lazily so that --help starts fast
    from ..cloud import FleetClient
    from ..config import Config
    from ..models import Outcome, Plan, Step
    from ..pacing import Pacer

from ._common import (
    ArmEndpoint,
    Cloud,
    Common,
    ConfigPath,
    Debug,
    ExcludeTags,
    Groups,
    Ids,
    IncludeProduction,
    Locations,
    Names,
    OutputFormat,
    PowerStates,
    Query,
    Subscriptions,
    Tags,
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
HookEnv = Annotated[list[str], typer.Option("--hook-env", metavar="NAME", help="Pass this environment variable to hooks (repeatable); hooks otherwise get only PATH, HOME, locale and the VMCTL_* variables.")]


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _ask(prompt: str) -> str:
    return str(typer.prompt(prompt, default="", show_default=False, err=True))


class _Progress:
    """Rich progress on a terminal; one plain line per VM otherwise. Thread-safe."""

    def __init__(self, total: int, verb: str) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.lock = threading.Lock()
        self.rich = None
        if total and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.rich = Progress(TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                 TextColumn("failed: {task.fields[failed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 transient=True)
            self.task = self.rich.add_task(verb, total=total, rate="", failed=0)
            self.rich.start()
            import time as _t
            self.t0 = _t.monotonic()

    def __call__(self, step: Step, outcome: Outcome) -> None:
        from ..models import FAILED_OUTCOMES

        if not step.acts:
            return
        with self.lock:
            self.done += 1
            self.failed += outcome.status in FAILED_OUTCOMES
            if self.rich is not None:
                import time as _t
                rate = self.done / max(0.001, _t.monotonic() - self.t0)
                self.rich.update(self.task, completed=self.done, failed=self.failed, rate=f"{rate:.1f}/s")
            else:
                dur = f"{outcome.duration:.1f}s" if outcome.duration is not None else "-"
                reason = f"  {outcome.reason}" if outcome.reason else ""
                print(f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome.status:<9} "
                      f"{step.vm.resource_group}/{step.vm.name} {step.action} {dur}{reason}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def _signals(stop: threading.Event, abandon: threading.Event, inflight: Callable[[], int]) -> Callable[[], None]:
    count = [0]

    def handler(signum: int, frame: object) -> None:
        count[0] += 1
        if count[0] == 1:
            stop.set()
            print(f"\nstopping: no new operations; waiting for {inflight()} in flight to finish "
                  "(press Ctrl-C again to stop waiting)", file=sys.stderr, flush=True)
        else:
            abandon.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def run_action(
    verb: str, common: Common, sel: dict[str, Any], *, dry_run: bool, yes: bool, plan_out: Path | None,
    journal_path: Path | None, report_path: Path | None, ticket: str | None, max_targets: int | None,
    max_percent: float | None, parallel: int | None, timeout: float, pre_hook: str | None, post_hook: str | None,
    hook_timeout: float, hook_env: tuple[str, ...] = (), keep_allocation: bool = False, skip_shutdown: bool = False,
    hibernate: bool = False,
    hibernate_fallback: str = "fail", wave_by: str = "update-domain", pause: float = 300.0,
    evidence_wait: float = 600.0,
) -> None:
    from ..cloud import make_client
    from ..errors import REFUSED, GuardRefusal, InputError
    from ..inventory import Need, load_inventory
    from ..journal import write_private
    from ..models import Options
    from ..planner import build_plan, plan_json
    from ..render import emit
    from ..safety import STOP_BILLED, confirm, stop_or_deallocate
    from ..views import plan_output
    from .inventory import _setup

    ctx = _setup(common, **sel)
    cfg, fmt, selector, subs, connection = ctx.config, ctx.fmt, ctx.selector, ctx.subscriptions, ctx.connection
    if hibernate_fallback not in ("fail", "deallocate"):
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
    if not (wave_by in ("update-domain", "none") or (wave_by.startswith("tag:") and len(wave_by) > 4)):
        raise InputError(f"--wave-by '{wave_by}' is not update-domain, tag:KEY or none.")
    is_tty = interactive()
    stop_refused = False
    if verb == "stop":
        if dry_run and not keep_allocation:
            stop_refused = True  # the plan is still shown; the exit code says a guard would refuse
        else:
            verb = stop_or_deallocate(keep_allocation, is_tty, _ask)
    opts = Options(
        skip_shutdown=skip_shutdown and verb == "stop", hibernate=hibernate, hibernate_fallback=hibernate_fallback,
        include_production=selector.include_production,
        max_targets=max_targets if max_targets is not None else cfg.max_targets,
        max_percent=max_percent if max_percent is not None else cfg.max_percent,
        parallel=parallel or cfg.parallel, timeout=timeout, pre_hook=pre_hook, post_hook=post_hook,
        hook_timeout=hook_timeout, hook_env=hook_env, ticket=ticket, wave_by=wave_by, pause=pause,
    )
    client = make_client(connection)
    pacer = make_pacer(cfg)
    needs: tuple[Need, ...] = ("maintenance", "domains") if verb == "maintenance start" else ()
    inv = load_inventory(client, subs, selector, cfg, needs=needs, pacer=pacer)  # before
    plan = build_plan(verb, list(inv.vms), opts, totals=inv.totals, set_sizes=inv.set_sizes)
    if stop_refused:
        plan = replace(plan, refusals=plan.refusals + (STOP_BILLED.rstrip("."),))
    if plan_out:
        write_private(plan_out, json.dumps(plan_json(plan), indent=2, default=str) + "\n", flag="--plan-out")
    shown = plan_output(plan)  # views
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
    confirm(plan, yes, is_tty, _ask)
    _execute(client, plan, cfg, fmt, common, journal_path, report_path, evidence_wait=evidence_wait, pacer=pacer)


def make_pacer(cfg: Config) -> Pacer:
    from ..config import pace_scale
    from ..pacing import Pacer

    return Pacer(scale=pace_scale(cfg))


def evidence_seconds(text: str, skip: bool) -> float:
    from ..timefmt import parse_duration

    return 0.0 if skip else parse_duration(text, "--evidence-wait")


def _execute(client: FleetClient, plan: Plan, cfg: Config, fmt: str, common: Common, journal_path: Path | None,
             report_path: Path | None, resume_records: list[dict[str, Any]] | None = None,
             evidence_wait: float = 600.0, pacer: Pacer | None = None) -> None:
    """Parse-call-render: the run itself is `vmctl.run.execute`; here only the terminal's side
    (progress, messages, Ctrl-C/SIGTERM) and the report."""
    from .. import journal as jr
    from ..config import pace_scale
    from ..report import build
    from ..run import RunSettings, RunUI, execute

    scale = pace_scale(cfg)
    stop, abandon = threading.Event(), threading.Event()
    progress: list[_Progress] = []
    restore: list[Callable[[], None]] = []

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def started(todo: int, in_flight: Callable[[], int]) -> None:
        progress.append(_Progress(todo, plan.verb))
        restore.append(_signals(stop, abandon, in_flight))

    def on_outcome(step: Step, outcome: Outcome) -> None:
        if progress:
            progress[0](step, outcome)

    settings = RunSettings(poll_interval=cfg.poll_interval / scale, scale=scale, evidence_wait=evidence_wait,
                           command=shlex.join(["vmctl", *sys.argv[1:]]))
    try:
        result = execute(client, plan, journal_path or jr.default_path(plan.run_id), pacer or make_pacer(cfg), settings,
                         resume_records=resume_records, ui=RunUI(say=say, on_outcome=on_outcome, started=started),
                         stop=stop, abandon=abandon, endpoint=client.connection.endpoint)
    finally:
        for r in restore:
            r()
        for p in progress:
            p.close()
    _show_report(build(result.records), fmt, common.query, report_path)


def _show_report(rep: dict[str, Any], fmt: str, query: str | None, report_path: Path | None,
                 exit_with_run: bool = True) -> None:
    from ..journal import write_private
    from ..render import emit, envelope
    from ..views import report_markdown as markdown
    from ..views import report_output as output

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
def _sel(resource_group: list[str], name: list[str], ids: list[str], tag: list[str], exclude_tag: list[str],
         location: list[str], power_state: list[str], include_production: bool) -> dict[str, Any]:
    return dict(groups=resource_group, names=name, ids=ids, tags=tag, exclude_tags=exclude_tag, locations=location,
                power_states=power_state, include_production=include_production)


def _action_options(
    resource_group: Groups = [], name: Names = [], ids: Ids = [], tag: Tags = [], exclude_tag: ExcludeTags = [],
    location: Locations = [], power_state: PowerStates = [], include_production: IncludeProduction = False,
    dry_run: DryRun = False, yes: Yes = False, plan_out: PlanOut = None, journal: JournalPath = None,
    report: ReportPath = None, ticket: Ticket = None, max_targets: MaxTargets = None, max_percent: MaxPercent = None,
    parallel: Parallel = None, timeout: Timeout = 3600.0, pre_hook: PreHook = None, post_hook: PostHook = None,
    hook_timeout: HookTimeout = 300.0, hook_env: HookEnv = [], evidence_wait: EvidenceWait = "10m",
    no_evidence_wait: NoEvidenceWait = False,
    subscription: Subscriptions = [], cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False,
) -> None:
    """The options every action command shares: this signature is their one definition."""


def action_command(verb: str, doc: str, extras: Callable[..., dict[str, Any]] | None = None) -> Callable[..., None]:
    """A Typer command for `verb`: its own options (the parameters of `extras`, which turns them into
    run_action keyword arguments) followed by the shared ones."""
    shared = list(inspect.signature(_action_options, eval_str=True).parameters.values())
    own = list(inspect.signature(extras, eval_str=True).parameters.values()) if extras else []

    @handle_errors
    def cmd(**kw: Any) -> None:
        more = extras(**{p.name: kw.pop(p.name) for p in own}) if extras else {}
        run_action(
            verb, Common(kw["subscription"], kw["cloud"], kw["arm_endpoint"], kw["config"], kw["output"], kw["query"],
                         kw["debug"]),
            _sel(kw["resource_group"], kw["name"], kw["ids"], kw["tag"], kw["exclude_tag"], kw["location"],
                 kw["power_state"], kw["include_production"]),
            dry_run=kw["dry_run"], yes=kw["yes"], plan_out=kw["plan_out"], journal_path=kw["journal"],
            report_path=kw["report"], ticket=kw["ticket"], max_targets=kw["max_targets"],
            max_percent=kw["max_percent"], parallel=kw["parallel"], timeout=kw["timeout"], pre_hook=kw["pre_hook"],
            post_hook=kw["post_hook"], hook_timeout=kw["hook_timeout"], hook_env=tuple(kw["hook_env"]),
            evidence_wait=evidence_seconds(kw["evidence_wait"], kw["no_evidence_wait"]), **more)

    cmd.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    cmd.__doc__ = doc
    cmd.__name__ = f"{verb.replace(' ', '_')}_cmd"
    return cmd


def _stop_options(
    keep_allocation: Annotated[bool, typer.Option("--keep-allocation", help="Say that compute should stay allocated and billed (required for stop).")] = False,
    skip_shutdown: Annotated[bool, typer.Option("--skip-shutdown", help="Hard power-off without guest shutdown: emergency containment only.")] = False,
) -> dict[str, Any]:
    return {"keep_allocation": keep_allocation, "skip_shutdown": skip_shutdown}


def _deallocate_options(
    hibernate: Annotated[bool, typer.Option("--hibernate", help="Hibernate (save memory to the OS disk); hibernation-enabled VMs only.")] = False,
    hibernate_fallback: Annotated[str, typer.Option("--hibernate-fallback", metavar="fail|deallocate", help="fail (VMs that cannot hibernate count as failed) or deallocate them plainly.")] = "fail",
) -> dict[str, Any]:
    return {"hibernate": hibernate, "hibernate_fallback": hibernate_fallback}


stop_cmd = action_command("stop", """Power VMs off, keeping compute allocated and BILLED (use deallocate to stop paying).

    Requires --keep-allocation: a stopped VM is still billed for compute.

    Example:

        vmctl stop -g rg-batch --tag role=worker --keep-allocation --dry-run
    """, _stop_options)
deallocate_cmd = action_command("deallocate", """Deallocate VMs: release compute so it is no longer billed.

    Temporary-disk data and dynamic public IPs are lost; capacity is not guaranteed at restart.

    Example:

        vmctl deallocate --tag env=dev --dry-run --plan-out plan.json

        vmctl deallocate --tag env=dev --yes --ticket CHG-1234 --report report.md
    """, _deallocate_options)
start_cmd = action_command("start", """Start VMs (compute is allocated and billed again).

    Example:

        vmctl start -g rg-web --post-hook ./healthcheck.sh --yes
    """)
restart_cmd = action_command("restart", """Restart running VMs (the guest reboots; compute stays allocated).

    Example:

        vmctl restart -n 'web-*' --pre-hook ./drain.sh --post-hook ./healthcheck.sh --parallel 2 --yes
    """)


@handle_errors
def resume_cmd(
    journal: Annotated[Path, typer.Argument(metavar="JOURNAL", help="The run journal (JSONL) of an interrupted run.")],
    report: ReportPath = None, output: OutputFormat = None, query: Query = None, config: ConfigPath = None,
    cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, evidence_wait: EvidenceWait = "10m",
    no_evidence_wait: NoEvidenceWait = False, debug: Debug = False,
) -> None:
    """Continue an interrupted run: re-read current state, never repeat a completed step.

    Example:

        vmctl resume ~/.local/state/vmctl/runs/20261122T101500Z-1a2b3c.jsonl
    """
    from .. import journal as jr
    from .. import preflight
    from ..cloud import make_client
    from ..config import load_config
    from ..journal import iter_type
    from ..planner import plan_from_json
    from ._common import connection_for, resolve_output

    cfg = load_config(config)
    fmt = resolve_output(output, cfg.output)
    preflight.check_query(query)
    preflight.check_writable(report, "--report")
    records = jr.read(journal)
    plan = plan_from_json(next(iter_type(records, "plan"))["plan"])
    common = Common([], cloud, arm_endpoint, config, output, query, debug)
    client = make_client(connection_for(common, cfg))
    _execute(client, plan, cfg, fmt, common, journal, report, resume_records=records,
             evidence_wait=evidence_seconds(evidence_wait, no_evidence_wait))


@handle_errors
def report_cmd(
    journal: Annotated[Path, typer.Argument(metavar="JOURNAL", help="A run journal (JSONL).")],
    report: ReportPath = None,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", metavar="DIR", help="Write plan.json, journal.jsonl, report.md, report.json, evidence.json and SHA256SUMS into DIR.")] = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False,
) -> None:
    """Re-render any past run from its journal (no request is sent).

    Example:

        vmctl report ~/.local/state/vmctl/runs/20261122T101500Z-1a2b3c.jsonl -o markdown
    """
    from .. import journal as jr
    from .. import preflight
    from ..report import build
    from ._common import resolve_output

    fmt = resolve_output(output, None)
    preflight.check_query(query)
    preflight.check_writable(report, "--report")
    preflight.check_bundle_dir(bundle)
    records = jr.read(journal)
    rep = build(records)
    if bundle is not None:
        write_bundle(bundle, journal, records, rep)
    # re-rendering succeeds (exit 0) whatever the run's own exit code was; the data carries it
    _show_report(rep, fmt, query, report, exit_with_run=False)


def write_bundle(directory: Path, journal: Path, records: list[dict[str, Any]], rep: dict[str, Any]) -> None:
    """The attachment for a change ticket, verifiable later with `sha256sum -c SHA256SUMS`."""
    from ..evidence import collected
    from ..journal import iter_type
    from ..render import envelope
    from ..run import write_bundle as bundle
    from ..views import report_markdown as markdown
    from ..views import report_output as output

    plan = next(iter_type(records, "plan"))["plan"]
    files = {
        "plan.json": json.dumps(plan, indent=2, default=str) + "\n",
        "report.md": markdown(rep),
        "report.json": json.dumps(envelope(output(rep)), indent=2, default=str) + "\n",
        "evidence.json": json.dumps({"runId": rep["runId"], "events": collected(records),
                                     "missing": [v["evidence"]["correlationId"] for v in rep["vms"]
                                                 if v.get("evidence") and not v["evidence"].get("complete")]},
                                    indent=2, default=str) + "\n",
    }
    names = bundle(directory, journal, files)
    print(f"bundle: {directory} ({', '.join(n for n in names)}, SHA256SUMS)", file=sys.stderr)
