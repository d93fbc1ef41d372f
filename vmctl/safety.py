"""Guards that need the operator: stop versus deallocate, confirmation, production, skip-shutdown.

Pure decisions over a Plan; the prompt is a function handed in (a TTY prompt in the CLI, a list of
answers in tests). Without a terminal nothing is ever assumed: the flags must say it.
"""

from __future__ import annotations

from typing import Callable, Literal

from .errors import GuardRefusal, InputError
from .models import Plan

Ask = Callable[[str], str]
Confirmation = Literal["yes-flag", "prompt", "typed-count", "typed-phrase", "plan-file"]  # report.CONFIRMED_BY

STOP_BILLED = ("stop keeps compute allocated and billed; pass --keep-allocation if that is what you want, "
               "or use `vmctl deallocate` to stop paying for compute.")


def stop_or_deallocate(keep_allocation: bool, interactive: bool, ask: Ask) -> str:
    """`stop` needs --keep-allocation; on a terminal the operator may choose instead. Returns the verb."""
    if keep_allocation:
        return "stop"
    if not interactive:
        raise GuardRefusal(STOP_BILLED)
    while True:
        answer = ask("stop keeps compute allocated and billed: [s]top anyway / [d]eallocate instead / [a]bort? ").strip().lower()
        if answer in ("s", "stop"):
            return "stop"
        if answer in ("d", "deallocate"):
            return "deallocate"
        if answer in ("a", "abort", "q", ""):
            raise GuardRefusal("aborted at the stop-versus-deallocate prompt; nothing was changed.")


def confirm(plan: Plan, yes: bool, interactive: bool, ask: Ask) -> Confirmation:
    """Raise unless the run may go ahead; say how the operator said go (the journal keeps it).
    Call only for a plan with something to do."""
    if plan.refusals:
        raise GuardRefusal("; ".join(plan.refusals) + ".")
    acting = plan.acting
    prod = plan.production_acting
    summary = plan.summary()
    what = ", ".join(f"{n} {a}" for a, n in summary["actions"].items())
    if plan.options.skip_shutdown and prod:
        # hard power-off of production: typed confirmation only, never a --yes shortcut
        if not interactive:
            raise GuardRefusal(f"--skip-shutdown on {len(prod)} production VM(s) needs a typed confirmation on a "
                               "terminal; it cannot be confirmed with --yes.")
        typed = ask(f"HARD POWER-OFF of {len(prod)} production VM(s) without guest shutdown. "
                    f"Type 'power off {len(prod)} production' to continue: ").strip()
        if typed != f"power off {len(prod)} production":
            raise GuardRefusal("the typed confirmation did not match; nothing was changed.")
        return "typed-phrase"
    if prod and not yes:
        if not interactive:
            raise InputError(f"the plan acts on {len(prod)} production VM(s); without a terminal that needs "
                             "--include-production --yes.")
        typed = ask(f"The plan acts on {len(prod)} PRODUCTION VM(s) ({what} in all). "
                    f"Type the number of production VMs ({len(prod)}) to continue: ").strip()
        if typed != str(len(prod)):
            raise GuardRefusal("the typed count did not match; nothing was changed.")
        return "typed-count"
    if yes:
        return "yes-flag"
    if not interactive:
        raise InputError(f"the plan would change {len(acting)} VM(s) and there is no terminal to confirm it.",
                         "Review it with --dry-run, then run again with --yes.")
    answer = ask(f"Go ahead: {what} on {len(acting)} VM(s)? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise GuardRefusal("aborted at the confirmation prompt; nothing was changed.")
    return "prompt"


def plan_drift(approved: Plan, fresh: Plan) -> list[str]:
    """What the fresh plan would do that the approved one did not say: a VM acting that the approved
    plan skipped or did not hold, or acting differently (another action, hibernate, path). Empty
    when the fresh plan does the same or less (a VM that reached its target since is skipped, and
    says so in the plan). Refusals of the approved plan are drift too: a refused plan is never applied."""
    out = [f"the approved plan was refused ({r})" for r in approved.refusals]
    before = {s.vm.id.lower(): s for s in approved.steps}
    for s in fresh.acting:
        was = before.get(s.vm.id.lower())
        if was is None or not was.acts:
            why = "was not in it" if was is None else f"was skipped in it ({was.skip})"
            out.append(f"{s.vm.resource_group}/{s.vm.name} would get {s.action}, but {why}")
        elif (was.action, was.hibernate, was.path) != (s.action, s.hibernate, s.path):
            out.append(f"{s.vm.resource_group}/{s.vm.name} would get {s.path or s.action}, "
                       f"approved: {was.path or was.action}")
    if fresh.verb != approved.verb:
        out.append(f"the approved plan is for {approved.verb}, not {fresh.verb}")
    return out
