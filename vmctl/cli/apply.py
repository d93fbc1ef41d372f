"""`vmctl apply PLAN`: carry out a plan saved with `--dry-run --plan-out` (and approved), if the
fleet still matches it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    ArmEndpoint,
    Cloud,
    Common,
    ConfigPath,
    Debug,
    OutputFormat,
    Query,
    SelectionArgs,
    Verbose,
    handle_errors,
)
from .actions import (
    DryRun,
    EvidenceWait,
    JournalPath,
    NoEvidenceWait,
    ReportPath,
    Signals,
    Yes,
    evidence_seconds,
    run_action,
)

PlanFile = Annotated[Path, typer.Argument(metavar="PLAN", help="A plan saved by an action command's --plan-out.")]
ApplyProduction = Annotated[bool, typer.Option(
    "--include-production", help="Required again when the plan acts on production VMs (asked for twice: at plan and at apply).")]


@handle_errors
def apply_cmd(
    plan_file: PlanFile,
    yes: Yes = False, dry_run: DryRun = False, include_production: ApplyProduction = False,
    journal: JournalPath = None, report: ReportPath = None, evidence_wait: EvidenceWait = "10m",
    no_evidence_wait: NoEvidenceWait = False,
    cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, config: ConfigPath = None, output: OutputFormat = None,
    query: Query = None, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Carry out a saved, approved plan: its VMs, its verb, its options; refused if the fleet changed.

    Only the VMs the plan acts on are read again, and planned afresh with the saved options: the
    approved work or less, never more. A VM that reached its target since is skipped (the plan says
    so); a VM the plan did not act on is never touched. A VM whose action would differ (hibernate
    or not, say), or a plan a guard refused, refuses the whole apply (exit 4) with nothing sent. A
    plan acting on production needs --include-production again. The run is an ordinary run:
    journal, report, evidence, `vmctl resume`.

    The plan comes from, e.g., `vmctl deallocate --tag env=dev --dry-run --plan-out plan.json`.

    Example:

        vmctl apply plan.json --yes --report CHG-1234.md
    """
    import json

    from ..errors import GuardRefusal, InputError
    from ..planner import plan_from_json

    try:
        approved = plan_from_json(json.loads(plan_file.read_text(encoding="utf-8")))
    except OSError as exc:
        raise InputError(f"cannot read plan {plan_file}: {exc.strerror or exc}.",
                         "Give the file an action command wrote with --plan-out.") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{plan_file} is not a vmctl plan ({type(exc).__name__}: {exc}).",
                         "Give the file an action command wrote with --dry-run --plan-out.") from None
    if approved.refusals:
        raise GuardRefusal(f"the saved plan was refused by a guard ({'; '.join(approved.refusals)}); it is never "
                           "applied.", "Fix what the guard says, make a new plan and have it approved.")
    acting = approved.acting
    if not acting:
        raise InputError(f"the plan in {plan_file} acts on no VM: nothing to apply.")
    prod = approved.production_acting
    if prod and not include_production:
        raise GuardRefusal(f"the saved plan acts on {len(prod)} production VM(s); applying it needs "
                           "--include-production again.", "Add --include-production (and --yes without a terminal).")
    subs = sorted({s.vm.subscription_id for s in acting})
    sel = SelectionArgs(groups=[], names=[], ids=[s.vm.id for s in acting], tags=[], exclude_tags=[], locations=[],
                        power_states=[], include_production=bool(prod) and include_production)
    opts = approved.options
    with Signals() as signals:  # as any action command: 130/143, journal exact, report written
        run_action(
            # only the plan's VMs, read afresh through ARM whatever source made the plan
            approved.verb, Common(subs, cloud, arm_endpoint, config, output, query, debug, source="arm"), sel, dry_run=dry_run,
            yes=yes, plan_out=None, journal_path=journal, report_path=report, ticket=opts.ticket,
            max_targets=opts.max_targets, max_percent=opts.max_percent, parallel=opts.parallel, timeout=opts.timeout,
            pre_hook=opts.pre_hook, post_hook=opts.post_hook, hook_timeout=opts.hook_timeout, hook_env=opts.hook_env,
            keep_allocation=approved.verb == "stop", skip_shutdown=opts.skip_shutdown, hibernate=opts.hibernate,
            hibernate_fallback=opts.hibernate_fallback, wave_by=str(opts.wave_by), pause=opts.pause,
            engine=opts.engine, retry_count=opts.retry_count if opts.engine == "batch" else None,
            retry_window=opts.retry_window if opts.engine == "batch" and opts.retry_count else None,
            evidence_wait=evidence_seconds(evidence_wait, no_evidence_wait), approved=approved, signals=signals,
        )
