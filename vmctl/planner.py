"""(inventory, intent, guards) -> Plan: one step per selected VM, acting or skipped with a reason.
Pure: no I/O, no prompts. The run executes exactly the plan."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from .models import Vm

VERBS = {"stop": "powerOff", "deallocate": "deallocate", "start": "start", "restart": "restart"}
TARGET = {"powerOff": "stopped", "deallocate": "deallocated", "start": "running", "restart": "running"}
TRANSITIONAL = {"starting", "stopping", "deallocating"}

CONSEQUENCE = {
    "powerOff": "compute stays allocated and billed",
    "deallocate": ("compute released; temporary disk data lost; dynamic public IPs released; "
                   "capacity not guaranteed at restart"),
    "hibernate": ("compute released; memory saved to the OS disk (hibernated); temporary disk data lost; "
                  "dynamic public IPs released; capacity not guaranteed at resume"),
    "start": "compute allocated and billed again; allocation can fail when the region is short of capacity",
    "restart": "the guest reboots: a short outage; compute stays allocated",
}

SKIP_TEXT = {
    "already-in-target-state": "already {state}: nothing to do, no request sent",
    "production": "production VM: excluded (add --include-production to act on it)",
    "scale-set-member": "scale-set member: act on the scale set instead",
    "ephemeral-os-disk": "ephemeral OS disk: cannot be deallocated (stop it, or delete and recreate it)",
    "hibernation-not-enabled": "hibernation not enabled on this VM (see --hibernate-fallback)",
    "hibernation-needs-running": "only a running VM can hibernate; it is {state} (see --hibernate-fallback)",
    "provisioning-failed": "provisioning state Failed: inspect it (vmctl show) before acting",
    "operation-in-progress": "another operation is in progress ({state})",
    "not-running": "restart needs a running VM; it is {state} (use start)",
}


@dataclass(frozen=True)
class Options:
    skip_shutdown: bool = False
    hibernate: bool = False
    hibernate_fallback: str = "fail"  # fail | deallocate
    include_production: bool = False
    max_targets: int = 50
    max_targets_explicit: bool = False
    max_percent: float | None = None
    parallel: int = 20
    timeout: float = 3600.0
    pre_hook: str | None = None
    post_hook: str | None = None
    hook_timeout: float = 300.0
    ticket: str | None = None


@dataclass(frozen=True)
class Step:
    index: int
    vm: Vm
    action: str | None          # the ARM action when the step acts; None when skipped
    skip: str | None = None     # skip reason code
    detail: str = ""            # the consequence (acting) or the reason (skipped)
    hibernate: bool = False
    path: str = ""              # for deallocate --hibernate: "hibernate" or "deallocate (fallback)"

    @property
    def acts(self) -> bool:
        return self.action is not None


@dataclass(frozen=True)
class Plan:
    run_id: str
    verb: str
    action: str
    steps: tuple[Step, ...]
    options: Options
    created_at: str
    refusals: tuple[str, ...] = ()
    totals: dict[str, int] = field(default_factory=dict)  # subscription id -> all VMs (for --max-percent)

    @property
    def acting(self) -> list[Step]:
        return [s for s in self.steps if s.acts]

    @property
    def production_acting(self) -> list[Step]:
        return [s for s in self.steps if s.acts and s.vm.production]

    def summary(self) -> dict[str, Any]:
        acts: dict[str, int] = {}
        skips: dict[str, int] = {}
        for s in self.steps:
            if s.acts:
                key = "hibernate" if s.hibernate else s.action or ""
                acts[key] = acts.get(key, 0) + 1
            elif s.skip:
                skips[s.skip] = skips.get(s.skip, 0) + 1
        left_billed = sum(1 for s in self.steps if (s.acts and s.action == "powerOff")
                          or (not s.acts and s.vm.power_state == "stopped"))
        return {"targets": len(self.steps), "acting": sum(acts.values()), "actions": acts, "skipped": skips,
                "leftStoppedButBilled": left_billed, "production": len(self.production_acting)}


def _skip(i: int, vm: Vm, code: str) -> Step:
    return Step(i, vm, None, code, SKIP_TEXT[code].format(state=vm.power_state))


def plan_step(i: int, vm: Vm, action: str, opts: Options) -> Step:
    """The decision for one VM. Order matters: the first reason that applies is the one shown."""
    if vm.production and not opts.include_production:
        return _skip(i, vm, "production")
    if vm.scale_set:
        return _skip(i, vm, "scale-set-member")
    if vm.power_state in TRANSITIONAL or vm.provisioning_state.lower() in ("updating", "creating", "deleting"):
        return _skip(i, vm, "operation-in-progress")
    if vm.provisioning_state.lower() == "failed" and action != "start":
        return _skip(i, vm, "provisioning-failed")
    target = TARGET[action]
    if action == "restart":
        if vm.power_state != "running":
            return _skip(i, vm, "not-running")
    elif vm.power_state == target or (action == "powerOff" and vm.power_state == "deallocated"):
        return _skip(i, vm, "already-in-target-state")
    if action == "deallocate":
        if vm.ephemeral_os_disk:
            return _skip(i, vm, "ephemeral-os-disk")
        if opts.hibernate:
            reason = None
            if not vm.hibernation_enabled:
                reason = "hibernation-not-enabled"
            elif vm.power_state != "running":
                reason = "hibernation-needs-running"
            if reason is None:
                return Step(i, vm, action, None, CONSEQUENCE["hibernate"], hibernate=True, path="hibernate")
            if opts.hibernate_fallback == "deallocate":
                return Step(i, vm, action, None, CONSEQUENCE["deallocate"], path="deallocate (fallback)")
            return _skip(i, vm, reason)
    detail = CONSEQUENCE[action]
    if action == "powerOff" and opts.skip_shutdown:
        detail += "; HARD POWER-OFF: no guest shutdown (emergency containment only)"
    return Step(i, vm, action, None, detail)


def guard_refusals(steps: list[Step], opts: Options, totals: dict[str, int]) -> list[str]:
    """Blast-radius guards; each refusal is one sentence with the way past it."""
    out = []
    acting = [s for s in steps if s.acts]
    if len(acting) > opts.max_targets:
        out.append(f"the plan acts on {len(acting)} VMs, more than --max-targets {opts.max_targets}; "
                   "narrow the selection or raise --max-targets explicitly")
    if opts.max_percent is not None:
        per_sub: dict[str, int] = {}
        for s in acting:
            per_sub[s.vm.subscription_id] = per_sub.get(s.vm.subscription_id, 0) + 1
        for sub, n in per_sub.items():
            total = totals.get(sub) or n
            pct = 100.0 * n / total
            if pct > opts.max_percent:
                out.append(f"the plan acts on {n} of {total} VMs ({pct:.0f}%) in subscription {sub}, more than "
                           f"--max-percent {opts.max_percent:g}; narrow the selection or raise --max-percent")
    return out


def build_plan(verb: str, vms: list[Vm], opts: Options, totals: dict[str, int] | None = None,
               now: datetime | None = None, run_id: str | None = None) -> Plan:
    action = VERBS[verb]
    steps = [plan_step(i, vm, action, opts) for i, vm in enumerate(vms)]
    totals = totals or {}
    return Plan(
        run_id=run_id or new_run_id(now), verb=verb, action=action, steps=tuple(steps), options=opts,
        created_at=(now or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z"),
        refusals=tuple(guard_refusals(steps, opts, totals)), totals=dict(totals),
    )


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- JSON (plan.json, the journal's first line)
def step_json(s: Step) -> dict[str, Any]:
    from .views import vm_json

    return {"index": s.index, "vm": vm_json(s.vm, datetime.now(timezone.utc)), "action": s.action, "skip": s.skip,
            "detail": s.detail, "hibernate": s.hibernate, "path": s.path}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {"runId": plan.run_id, "verb": plan.verb, "action": plan.action, "createdAt": plan.created_at,
            "options": asdict(plan.options), "refusals": list(plan.refusals), "totals": plan.totals,
            "summary": plan.summary(), "steps": [step_json(s) for s in plan.steps]}


def vm_from_plan_json(d: dict[str, Any]) -> Vm:
    from .models import Maintenance

    m = d.get("maintenance")
    maint = None
    if m:
        def ts(x: str | None) -> datetime | None:
            return datetime.fromisoformat(x.replace("Z", "+00:00")) if x else None
        maint = Maintenance(m["allowed"], ts(m["selfServiceWindow"]["start"]), ts(m["selfServiceWindow"]["end"]),
                            ts(m["scheduledWindow"]["start"]), ts(m["scheduledWindow"]["end"]),
                            m.get("lastOperationResultCode"), m.get("lastOperationMessage"))
    flags = set(d.get("flags") or [])
    return Vm(subscription_id=d["subscriptionId"], resource_group=d["resourceGroup"], name=d["name"], id=d["id"],
              location=d["location"], size=d["size"], power_state=d["powerState"],
              provisioning_state=d["provisioningState"], subscription_name=d["subscriptionName"],
              hibernated=d["hibernated"], availability_set=d["availabilitySet"], update_domain=d["updateDomain"],
              fault_domain=d["faultDomain"], zones=tuple(d["zones"]), tags=dict(d["tags"]), maintenance=maint,
              ephemeral_os_disk="ephemeral-os" in flags, hibernation_enabled="hibernation" in flags,
              priority="Spot" if "spot" in flags else "Regular", scale_set="(scale set)" if "vmss" in flags else None,
              production=d["production"])


def plan_from_json(d: dict[str, Any]) -> Plan:
    steps = tuple(Step(s["index"], vm_from_plan_json(s["vm"]), s["action"], s["skip"], s["detail"], s["hibernate"],
                       s["path"]) for s in d["steps"])
    return Plan(run_id=d["runId"], verb=d["verb"], action=d["action"], steps=steps, options=Options(**d["options"]),
                created_at=d["createdAt"], refusals=tuple(d["refusals"]), totals=dict(d.get("totals") or {}))
