"""Past runs, from the journals in the state directory: `vmctl runs`, `vmctl resume`, `vmctl report`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:  # annotations only: the CLI imports the core lazily so that --help starts fast
    from ..journal import Record
    from ..report import Report

from ._common import (
    ArmEndpoint,
    Cloud,
    Common,
    ConfigPath,
    Debug,
    OutputFormat,
    Query,
    Verbose,
    handle_errors,
)
from .actions import (
    DryRun,
    EvidenceWait,
    NoEvidenceWait,
    ReportPath,
    Signals,
    Yes,
    _ask,
    _execute,
    _show_report,
    evidence_seconds,
    interactive,
    make_pacer,
)

Last = Annotated[bool, typer.Option("--last", help="The most recent run in the state directory (vmctl runs lists them).")]


def pick_journal(journal: Path | None, last: bool) -> Path:
    """JOURNAL, or with --last the newest journal in the state directory (said on stderr)."""
    from .. import journal as jr
    from ..errors import InputError

    if journal is not None and last:
        raise InputError("give a JOURNAL or --last, not both.", "--last picks the most recent run in "
                         f"{jr.state_dir()}.")
    if journal is not None:
        return journal
    if not last:
        raise InputError("which run? Give its JOURNAL (the path printed at the start of the run) or --last.",
                         "`vmctl runs` lists past runs with their journals.")
    found = jr.journals()
    if not found:
        raise InputError(f"--last: there are no runs in {jr.state_dir()}.",
                         "Give the JOURNAL path of the run (a run given --journal keeps it there).")
    print(f"--last: {found[0]}", file=sys.stderr)
    return found[0]


@handle_errors
def resume_cmd(
    journal: Annotated[Optional[Path], typer.Argument(metavar="[JOURNAL]", help="The run journal (JSONL) of an interrupted run; or --last.", show_default=False)] = None,
    last: Last = False, dry_run: DryRun = False, yes: Yes = False,
    report: ReportPath = None, output: OutputFormat = None, query: Query = None, config: ConfigPath = None,
    cloud: Cloud = None, arm_endpoint: ArmEndpoint = None, evidence_wait: EvidenceWait = "10m",
    no_evidence_wait: NoEvidenceWait = False, debug: Debug = False, verbose: Verbose = False,
) -> None:
    """Continue an interrupted run: re-read current state, never repeat a completed step.

    Shows what is left (what will be sent, watched, or was found done meanwhile) and asks before
    sending anything (--yes without a terminal). --dry-run shows it and sends nothing, leaving the
    journal untouched.

    Example:

        vmctl resume --last --dry-run

        vmctl resume ~/.local/state/vmctl/runs/20261122T101500Z-1a2b3c.jsonl --yes
    """
    from .. import journal as jr
    from .. import preflight
    from ..cloud import make_client
    from ..config import load_config, pace_scale
    from ..journal import iter_type
    from ..planner import plan_from_json
    from ..render import emit
    from ..resume import ACTIVITY_LOG_LAG, MAY_WRITE, assess
    from ..safety import confirm
    from ..views import resume_plan_output
    from ._common import connection_for, resolve_output

    cfg = load_config(config)
    fmt = resolve_output(output, cfg.output)
    preflight.check_query(query)
    preflight.check_writable(report, "--report")
    wait = evidence_seconds(evidence_wait, no_evidence_wait)
    path = pick_journal(journal, last)
    records = jr.read(path)
    plan = plan_from_json(next(iter_type(records, "plan"))["plan"])
    common = Common([], cloud, arm_endpoint, config, output, query, debug)
    client = make_client(connection_for(common, cfg))
    pacer = make_pacer(cfg)
    # reads only: the run re-decides under its locks (another resume may have acted meanwhile)
    left = assess(client, plan, records, pacer, activity_log_lag=ACTIVITY_LOG_LAG / pace_scale(cfg))
    shown = resume_plan_output(plan, left, str(path))
    if dry_run:
        emit(shown, fmt, query)
        print("--dry-run: nothing was sent and the journal is untouched.", file=sys.stderr)
        return
    emit(shown, fmt if fmt in ("table", "markdown") else "table", None,
         stream=sys.stdout if fmt in ("table", "markdown") else sys.stderr)
    if not left.steps:
        print(f"Nothing to resume: every step of run {plan.run_id} has its outcome (vmctl report {path}).",
              file=sys.stderr)
        return
    may_write = tuple(d.step for d in left.steps if d.verdict in MAY_WRITE)
    with Signals() as signals:  # Ctrl-C at the prompt: 130, nothing sent; from the run on, as any run
        signals.phase = "waiting for confirmation"
        how = confirm(replace(plan, steps=may_write), yes, interactive(), _ask) if may_write else ""
        _execute(client, plan, cfg, fmt, common, path, report, resume_records=records, evidence_wait=wait,
                 pacer=pacer, signals=signals, confirmed_by=how)


@handle_errors
def report_cmd(
    journal: Annotated[Path, typer.Argument(metavar="JOURNAL", help="A run journal (JSONL).")],
    report: ReportPath = None,
    bundle: Annotated[Optional[Path], typer.Option("--bundle", metavar="DIR", help="Write plan.json, journal.jsonl, report.md, report.json, evidence.json and SHA256SUMS into DIR.")] = None,
    guest_journal: Annotated[Optional[list[Path]], typer.Option("--guest-journal", metavar="PATH", help="Guest journals collected from the VMs (a file, or a directory of .jsonl files; repeatable): show, per VM, whether its watcher drained and approved, and how long before NotBefore.")] = None,
    output: OutputFormat = None, query: Query = None, debug: Debug = False,
) -> None:
    """Re-render any past run from its journal (no request is sent).

    With --guest-journal, each VM also shows its guest side during the run, from the journals of
    `vmctl guest watch` collected from the VMs: the Scheduled Event it saw, whether the drain hook
    succeeded, whether it approved the event and how long before NotBefore.

    Example:

        vmctl report ~/.local/state/vmctl/runs/20261122T101500Z-1a2b3c.jsonl -o markdown

        vmctl report restart.jsonl --guest-journal ./guest-journals/
    """
    from .. import journal as jr
    from .. import preflight
    from ..report import build
    from ._common import resolve_output

    fmt = resolve_output(output, None)
    preflight.check_query(query)
    preflight.check_writable(report, "--report")
    preflight.check_bundle_dir(bundle)
    guests = None
    if guest_journal:
        from ..guest.story import load
        guests = load(guest_journal)
    records = jr.read(journal)
    rep = build(records, guests)
    if bundle is not None:
        write_bundle(bundle, journal, records, rep)
    # re-rendering succeeds (exit 0) whatever the run's own exit code was; the data carries it
    _show_report(rep, fmt, query, report, exit_with_run=False, journal=journal)


def write_bundle(directory: Path, journal: Path, records: list[Record], rep: Report) -> None:
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
        "report.md": markdown(rep, str(journal)),
        "report.json": json.dumps(envelope(output(rep, str(journal))), indent=2, default=str) + "\n",
        "evidence.json": json.dumps({"runId": rep["runId"], "events": collected(records),
                                     "missing": [e.get("correlationId") for v in rep["vms"]
                                                 if (e := v["evidence"]) and not e["complete"]]},
                                    indent=2, default=str) + "\n",
    }
    names = bundle(directory, journal, files)
    print(f"bundle: {directory} ({', '.join(n for n in names)}, SHA256SUMS)", file=sys.stderr)


@handle_errors
def runs_cmd(
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="Show the N most recent runs (0: all).")] = 20,
    output: OutputFormat = None, query: Query = None, debug: Debug = False,
) -> None:
    """List past runs from the state directory, newest first: when, verb, outcomes, exit code, journal.

    Reads the journals only (no request is sent). A run without an end record is running now or
    was killed: `vmctl resume` continues it.

    Example:

        vmctl runs --limit 5

        vmctl runs -o json --query "[?state=='interrupted'].journal"
    """
    from .. import journal as jr
    from .. import preflight
    from ..errors import InputError
    from ..render import emit
    from ..report import build
    from ..views import run_entry, runs_output
    from ._common import resolve_output

    fmt = resolve_output(output, None)
    preflight.check_query(query)
    if limit < 0:
        raise InputError("--limit must be 0 (all) or more.")
    found = jr.journals()
    entries = []
    for p in found[:limit] if limit else found:
        try:
            entries.append(run_entry(str(p), build(jr.read(p))))
        except InputError as exc:
            entries.append(run_entry(str(p), None, exc.message))
    emit(runs_output(entries, len(found)), fmt, query)
