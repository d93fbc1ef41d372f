"""`vmctl guest`: inside the VM. Watch Scheduled Events and drain before Azure or an operator
takes the VM down; install the systemd units that do it at boot and at shutdown."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ._common import handle_errors, printable

if TYPE_CHECKING:
    from ..guest.events import Policy
    from ..guest.journal import GuestRecord

app = typer.Typer(help="""Inside the VM: drain it before a Scheduled Event (reboot, redeploy, eviction) or a shutdown.

    Example:

        vmctl guest watch --drain-hook /usr/local/bin/drain.sh --recover-hook /usr/local/bin/rejoin.sh
    """, no_args_is_help=True)

_HOOK_TIMEOUT_HELP = "Seconds a hook may run (default 120, at most 270: Azure's 5-minute graceful-shutdown window)."
Journal = typer.Option(None, "--journal", metavar="PATH",
                       help="Guest journal (JSONL). Default: /var/lib/vmctl/guest.jsonl as root, else "
                            "$XDG_STATE_HOME/vmctl/guest.jsonl.")


def _journal_path(path: Optional[Path]) -> Path:
    from ..guest.journal import default_path

    return path if path is not None else default_path()


def _policy(approve: str, events: str, freeze_threshold: int, margin: float, hook_timeout: float) -> "Policy":
    from ..errors import InputError
    from ..guest.events import APPROVE_POLICIES, Policy, check_policy

    if approve not in APPROVE_POLICIES:
        raise InputError(f"--approve {approve!r} is not a policy.", f"Use one of {', '.join(APPROVE_POLICIES)}.")
    types = frozenset(t.strip() for t in events.split(",") if t.strip())
    policy = Policy(types=types, freeze_threshold=freeze_threshold, approve=approve,
                    margin=margin, hook_timeout=hook_timeout)
    problems = check_policy(policy)
    if not types:
        problems.insert(0, "--events is empty")
    if problems:
        raise InputError(problems[0] + ".", "See `vmctl guest watch --help`.")
    return policy


def _line(record: dict[str, object]) -> str:
    """One human line per journal record (the watcher's terminal output)."""
    t = record["type"]
    ts = str(record.get("ts", ""))[11:19]
    if t == "event":
        what = f"{record.get('eventType')} {record.get('eventId')} ({record.get('source')}, {record.get('status')})"
        return f"{ts} event {what}: {record.get('action')}" + (f" - {record['reason']}" if record.get("reason") else "")
    if t == "hook":
        ok = "ok" if record.get("ok") else f"FAILED: {record.get('reason')}"
        return f"{ts} {record.get('phase')} hook for {record.get('eventId') or 'shutdown'}: {ok} in {record.get('duration')} s"
    if t == "approve":
        if record.get("sent"):
            return f"{ts} approved {record.get('eventId')} ({record.get('secondsBeforeNotBefore')} s before NotBefore)"
        return f"{ts} not approving {record.get('eventId')}: {record.get('reason')}"
    if t == "imds-error":
        return f"{ts} IMDS: {record.get('error')} (retrying in {record.get('retryIn')} s)"
    if t == "identity":
        return f"{ts} watching Scheduled Events for VM {record.get('vm')}"
    if t == "document":
        return f"{ts} DocumentIncarnation {record.get('incarnation')}: {len(record.get('events') or [])} event(s)"  # type: ignore[arg-type]
    return f"{ts} {t}" + (f": {record['reason']}" if record.get("reason") else "")


@app.command("watch")
@handle_errors
def watch_cmd(
    imds_endpoint: str = typer.Option("http://169.254.169.254", "--imds-endpoint", envvar="VMCTL_IMDS_ENDPOINT",
                                      show_envvar=True, metavar="URL", help="IMDS base URL (the simulator: its /vm/NAME)."),
    drain_hook: Optional[str] = typer.Option(None, "--drain-hook", metavar="CMD",
                                             help="Run before an event: stop new work, finish in-flight work, persist state."),
    recover_hook: Optional[str] = typer.Option(None, "--recover-hook", metavar="CMD",
                                               help="Run when an acted-on event is gone (rejoin the load balancer)."),
    approve: str = typer.Option("after-drain", "--approve", metavar="POLICY",
                                help="never, after-drain (default: only events for this VM alone) or user-events."),
    events: str = typer.Option("Reboot,Redeploy,Preempt,Terminate", "--events", metavar="TYPES",
                               help="Event types to act on (comma list; add Freeze to act on long freezes)."),
    freeze_threshold: int = typer.Option(10, "--freeze-threshold", metavar="SECONDS",
                                         help="A Freeze must last longer than this to be acted on."),
    hook_timeout: float = typer.Option(120.0, "--hook-timeout", metavar="SECONDS", help=_HOOK_TIMEOUT_HELP),
    margin: float = typer.Option(10.0, "--margin", metavar="SECONDS",
                                 help="The drain ends this long before NotBefore (SIGTERM, then SIGKILL)."),
    poll_interval: float = typer.Option(1.0, "--poll-interval", metavar="SECONDS", help="Seconds between polls."),
    hook_env: list[str] = typer.Option([], "--hook-env", metavar="NAME", help="Pass this variable to hooks (repeatable)."),
    journal: Optional[Path] = Journal,
) -> None:
    """Watch this VM's Scheduled Events; drain before each one, approve when safe, recover after.

    Polls IMDS about once a second. For an event naming this VM (and of a watched type) it runs
    the drain hook with a deadline of NotBefore minus --margin, capped by --hook-timeout; then,
    under the default policy, approves the event only if it is for this VM alone (approval
    releases it for every VM it names). When the event is gone it runs the recover hook. Every
    step goes to the guest journal. SIGTERM or Ctrl-C stops it (exit 0).

    Example:

        vmctl guest watch --drain-hook /usr/local/bin/drain.sh --recover-hook /usr/local/bin/rejoin.sh
    """
    import math
    import signal
    import threading

    from ..errors import InputError
    from ..guest.journal import GuestJournal
    from ..guest.watcher import WatchConfig, Watcher
    from ..preflight import check_hook, check_hook_env

    policy = _policy(approve, events, freeze_threshold, margin, hook_timeout)
    if not (math.isfinite(poll_interval) and 0.01 <= poll_interval <= 60):
        raise InputError(f"--poll-interval {poll_interval:g} must be from 0.01 to 60 seconds.",
                         "IMDS allows 5 requests a second; about 1 is the documented habit.")
    if not imds_endpoint.startswith(("http://", "https://")):
        raise InputError(f"--imds-endpoint {imds_endpoint!r} is not an http:// URL.",
                         "Leave it out for http://169.254.169.254, or give the simulator's /vm/NAME URL.")
    check_hook(drain_hook, "--drain-hook")
    check_hook(recover_hook, "--recover-hook")
    names = check_hook_env(hook_env)
    config = WatchConfig(endpoint=imds_endpoint, policy=policy, drain_hook=drain_hook, recover_hook=recover_hook,
                         poll_interval=poll_interval, extra_env=names)
    path = _journal_path(journal)
    log = GuestJournal(path)
    stop = threading.Event()

    def notify(record: "GuestRecord") -> None:
        try:
            typer.echo(printable(_line(dict(record))))
        except (BrokenPipeError, OSError):
            pass

    watcher = Watcher(config, log, stop, notify=notify)
    typer.echo(f"vmctl guest watch: IMDS {imds_endpoint}, journal {path}, approve {policy.approve}; SIGTERM stops")

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    worker = threading.Thread(target=watcher.run, name="vmctl-guest-watch", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.wait(0.2):
        pass
    worker.join(5.0)  # a hook is stopped within its grace; an IMDS call in flight is abandoned
    if worker.is_alive():
        log.write("stop", reason="stopped (SIGTERM or SIGINT) during an IMDS call")
    log.close()
    typer.echo("vmctl guest watch: stopped")


@app.command("drain")
@handle_errors
def drain_cmd(
    drain_hook: str = typer.Option(..., "--drain-hook", metavar="CMD", help="The drain command."),
    hook_timeout: float = typer.Option(120.0, "--hook-timeout", metavar="SECONDS", help=_HOOK_TIMEOUT_HELP),
    hook_env: list[str] = typer.Option([], "--hook-env", metavar="NAME", help="Pass this variable to the hook (repeatable)."),
    journal: Optional[Path] = Journal,
) -> None:
    """Run the drain hook once, now: the shutdown unit's stop action (exit 1 if the hook fails).

    Example:

        vmctl guest drain --drain-hook /usr/local/bin/drain.sh --hook-timeout 120
    """
    import socket
    import threading

    from ..errors import InputError
    from ..guest.events import Policy, check_policy
    from ..guest.journal import GuestJournal
    from ..guest.watcher import WatchConfig, drain_once
    from ..preflight import check_hook, check_hook_env

    problems = check_policy(Policy(hook_timeout=hook_timeout))
    if problems:
        raise InputError(problems[0] + ".", "See `vmctl guest drain --help`.")
    check_hook(drain_hook, "--drain-hook")
    config = WatchConfig(endpoint="", policy=Policy(hook_timeout=hook_timeout), drain_hook=drain_hook,
                         extra_env=check_hook_env(hook_env))
    log = GuestJournal(_journal_path(journal))
    result = drain_once(config, log, threading.Event(), socket.gethostname())
    log.close()
    if result.output:
        typer.echo(result.output)
    if not result.ok:
        typer.echo(f"error: {printable(result.reason)}", err=True)
        raise typer.Exit(1)


@app.command("status")
@handle_errors
def status_cmd(
    journal: Optional[Path] = Journal,
    last: int = typer.Option(10, "--last", metavar="N", help="How many recent actions to show."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FORMAT", help="table (default) or json."),
) -> None:
    """Show the current Scheduled Events and the watcher's last actions, from its journal.

    Example:

        vmctl guest status --last 20
    """
    from ..errors import InputError
    from ..guest.journal import read, status
    from ..render import Output, Section, emit

    fmt = (output or "table").lower()
    if fmt not in ("table", "json"):
        raise InputError(f"--output {output!r} is not a format here.", "Use table or json.")
    if last < 1:
        raise InputError(f"--last {last} must be 1 or more.", "e.g. --last 10.")
    records = read(_journal_path(journal))
    doc, actions = status(records, last)
    current = list(doc.get("events", [])) if doc else []
    rows = [[str(e.get("eventType")), str(e.get("eventId")), str(e.get("status")), str(e.get("notBefore") or "-"),
             ",".join(e.get("resources", [])), str(e.get("source"))] for e in current]
    out = Output(kind="guest-status",
                 data={"incarnation": doc.get("incarnation") if doc else None, "events": current, "actions": actions},
                 columns=["TYPE", "EVENT", "STATUS", "NOT BEFORE", "RESOURCES", "SOURCE"], rows=rows,
                 sections=[Section(title="Last actions", lines=[_line(dict(a)) for a in actions])],
                 footer=[f"{len(current)} current event(s); journal {_journal_path(journal)}"])
    emit(out, fmt)


@app.command("install")
@handle_errors
def install_cmd(
    drain_hook: str = typer.Option(..., "--drain-hook", metavar="CMD", help="The drain command (absolute path)."),
    recover_hook: Optional[str] = typer.Option(None, "--recover-hook", metavar="CMD", help="The recover command (absolute path)."),
    approve: str = typer.Option("after-drain", "--approve", metavar="POLICY", help="never, after-drain or user-events."),
    hook_timeout: float = typer.Option(120.0, "--hook-timeout", metavar="SECONDS", help=_HOOK_TIMEOUT_HELP),
    imds_endpoint: Optional[str] = typer.Option(None, "--imds-endpoint", metavar="URL", help="Only to test against the simulator."),
    root: Path = typer.Option(Path("/"), "--root", metavar="DIR", help="Write under DIR/etc/systemd/system (tests, images)."),
    vmctl_path: Optional[str] = typer.Option(None, "--vmctl", metavar="PATH", help="The vmctl command the units run (default: this one)."),
    journal: Optional[Path] = Journal,
    force: bool = typer.Option(False, "--force", help="Replace unit files vmctl did not write."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the units; write nothing."),
) -> None:
    """Write the systemd units: the watcher service and a shutdown unit that drains on any stop.

    The shutdown unit's stop action runs the drain hook with a stop timeout below Azure's
    5-minute graceful-shutdown window, so a stop, deallocate or restart from the portal, az or
    vmctl drains the VM. Nothing is enabled: the next steps are printed.

    Example:

        vmctl guest install --drain-hook /usr/local/bin/drain.sh --recover-hook /usr/local/bin/rejoin.sh --dry-run
    """
    import shlex

    from ..errors import InputError
    from ..guest.units import install, units

    _policy(approve, "Reboot", 10, 10.0, hook_timeout)
    for flag, cmd in (("--drain-hook", drain_hook), ("--recover-hook", recover_hook)):
        if cmd is None:
            continue
        try:
            first = (shlex.split(cmd) or [""])[0]
        except ValueError:
            first = ""
        if not first.startswith("/"):
            raise InputError(f"{flag} {cmd!r} does not start with an absolute path.",
                             "systemd runs the units from /: give e.g. /usr/local/bin/drain.sh.")
    vmctl = shlex.split(vmctl_path) if vmctl_path else [sys.executable, "-m", "vmctl"]
    path = journal if journal is not None else Path("/var/lib/vmctl/guest.jsonl")
    files = units(root, vmctl, drain_hook, recover_hook, hook_timeout, approve, path, imds_endpoint)
    if dry_run:
        for f in files:
            typer.echo(f"# {f.path}\n{f.text}")
        return
    written = install(files, force=force)
    for p in written:
        typer.echo(f"wrote {p}")
    typer.echo("next: systemctl daemon-reload && systemctl enable --now vmctl-guest.service vmctl-guest-drain.service")


@app.command("uninstall")
@handle_errors
def uninstall_cmd(
    root: Path = typer.Option(Path("/"), "--root", metavar="DIR", help="Remove from DIR/etc/systemd/system."),
) -> None:
    """Remove the units `vmctl guest install` wrote (others are left alone, exit 2).

    Example:

        vmctl guest uninstall
    """
    from ..guest.units import uninstall

    typer.echo("first: systemctl disable --now vmctl-guest.service vmctl-guest-drain.service")
    removed, foreign = uninstall(root)
    for p in removed:
        typer.echo(f"removed {p}")
    if not removed and not foreign:
        typer.echo("nothing to remove: no vmctl guest units")
    for p in foreign:
        typer.echo(f"error: {p} was not written by vmctl; left alone", err=True)
    if foreign:
        raise typer.Exit(2)
