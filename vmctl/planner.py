"""(inventory, intent, guards) -> Plan: one step per selected VM, acting or skipped with a reason.
Pure: no I/O, no prompts. The run executes exactly the plan."""

from __future__ import annotations

import uuid
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import Any, Mapping

from .models import TARGET as TARGET
from .models import TRANSITIONAL as TRANSITIONAL
from .models import Action, Coverage, CoverageJson, Fact, FactSource, SkipCode, Vm, WaveBy, vm_busy
from .models import Options as Options
from .models import Plan as Plan
from .models import Step as Step
from .timefmt import iso, parse_iso

VERBS: dict[str, Action] = {"stop": "powerOff", "deallocate": "deallocate", "start": "start", "restart": "restart",
         "maintenance start": "performMaintenance"}
CONSEQUENCE = {
    "powerOff": "compute stays allocated and billed",
    "deallocate": ("compute released; temporary disk data lost; dynamic public IPs released; "
                   "capacity not guaranteed at restart"),
    "hibernate": ("compute released; memory saved to the OS disk (hibernated); temporary disk data lost; "
                  "dynamic public IPs released; capacity not guaranteed at resume"),
    "start": "compute allocated and billed again; allocation can fail when the region is short of capacity",
    "restart": "the guest reboots: a short outage; compute stays allocated",
    "performMaintenance": ("redeployed to an updated host: the VM reboots and is out of service for minutes; "
                           "temporary disk data lost"),
}

SKIP_TEXT: dict[SkipCode, str] = {
    "unreadable": "vmctl could not read this VM ({why}); treated as production and not acted on: run again",
    "state-unknown": "its power state could not be read; not acted on: run again",
    "already-in-target-state": "already {state}: nothing to do, no request sent",
    "production": "production VM: excluded (add --include-production to act on it)",
    "scale-set-member": "scale-set member: act on the scale set instead",
    "ephemeral-os-disk": "ephemeral OS disk: cannot be deallocated (stop it, or delete and recreate it)",
    "hibernation-not-enabled": "hibernation not enabled on this VM (see --hibernate-fallback)",
    "hibernation-needs-running": "only a running VM can hibernate; it is {state} (see --hibernate-fallback)",
    "provisioning-failed": "provisioning state Failed: inspect it (vmctl show) before acting",
    "operation-in-progress": "another operation is in progress ({state})",
    "not-running": "restart needs a running VM; it is {state} (use start)",
    "maintenance-not-pending": "no platform maintenance is pending for this VM",
    "maintenance-not-allowed": "Azure does not allow customer-initiated maintenance for it now; Azure will do it in its window",
    "self-service-window-not-open": "the self-service window is not open yet; vmctl maintenance status shows when it opens",
    "self-service-window-closed": "the self-service window has closed; Azure does it in its scheduled window",
    "deallocated": "deallocated: it is placed on an updated host when it next starts",
    "vm-not-found": "not found through ARM (deleted since Resource Graph's snapshot, or no longer readable): nothing sent",
    "selection-changed": "no longer matches the selection as ARM reads it now: not acted on",
}


def _skip(i: int, vm: Vm, code: SkipCode) -> Step:
    return Step(i, vm, None, code, SKIP_TEXT[code].format(state=vm.power_state, why=vm.unreadable))


def _maintenance_step(i: int, vm: Vm, opts: Options, now: datetime) -> Step:
    """Preflight for perform-maintenance: no request is sent that Azure would refuse with 409."""
    m = vm.maintenance
    if m is None:
        return _skip(i, vm, "maintenance-not-pending")
    if vm.power_state == "deallocated":
        return _skip(i, vm, "deallocated")
    if not m.allowed:
        return _skip(i, vm, "maintenance-not-allowed")
    if m.self_service_end and now > m.self_service_end:
        return _skip(i, vm, "self-service-window-closed")
    if m.self_service_start and now < m.self_service_start:
        return _skip(i, vm, "self-service-window-not-open")
    return Step(i, vm, "performMaintenance", None, CONSEQUENCE["performMaintenance"])


def plan_step(i: int, vm: Vm, action: Action, opts: Options, now: datetime | None = None) -> Step:
    """The decision for one VM. Order matters: the first reason that applies is the one shown."""
    if vm.unreadable:
        return _skip(i, vm, "unreadable")  # no guard may rely on data that was absent
    if vm.production and not opts.include_production:
        return _skip(i, vm, "production")
    if vm.scale_set:
        return _skip(i, vm, "scale-set-member")
    if vm.power_state == "unknown":
        return _skip(i, vm, "state-unknown")
    if vm_busy(vm.power_state, vm.provisioning_state):
        return _skip(i, vm, "operation-in-progress")
    if vm.provisioning_state.lower() == "failed" and action != "start":
        return _skip(i, vm, "provisioning-failed")
    if action == "performMaintenance":
        return _maintenance_step(i, vm, opts, now or datetime.now(timezone.utc))
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
            reason: SkipCode | None = None
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
    prod = [s for s in steps if s.skip == "production"]
    if prod and not acting:
        out.append(f"every VM the plan could act on is production ({len(prod)}: "
                   f"{', '.join(s.vm.name for s in prod[:3])}{', ...' if len(prod) > 3 else ''}) and production is "
                   "excluded; add --include-production (and confirm) if that is what you mean")
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
               now: datetime | None = None, run_id: str | None = None,
               set_sizes: dict[str, int] | None = None, *, facts: Mapping[str, Fact] | None = None,
               source: FactSource = "arm", coverage: Coverage | None = None) -> Plan:
    """`facts` (a plan from Resource Graph, by VM key): where each VM's facts came from, what the
    ARM re-check found, and a skip it forces; a VM without one was read through ARM."""
    action = VERBS[verb]
    steps = [_with_fact(i, vm, action, opts, now, (facts or {}).get(vm.key)) for i, vm in enumerate(vms)]
    if action == "performMaintenance":
        steps = assign_waves(steps, opts.wave_by, opts.parallel)
    totals = totals or {}
    return Plan(
        run_id=run_id or new_run_id(now), verb=verb, action=action, steps=tuple(steps), options=opts,
        created_at=iso(now or datetime.now(timezone.utc)) or "",
        refusals=tuple(guard_refusals(steps, opts, totals)), totals=dict(totals), set_sizes=dict(set_sizes or {}),
        source=source, coverage=coverage,
    )


def _with_fact(i: int, vm: Vm, action: Action, opts: Options, now: datetime | None, fact: Fact | None) -> Step:
    if fact is None:
        return plan_step(i, vm, action, opts, now)
    step = _skip(i, vm, fact.skip) if fact.skip else plan_step(i, vm, action, opts, now)
    return replace(step, source=fact.source, recheck=fact.note)


WAVE_SIZE = 20  # maintenance: VMs outside availability sets per wave when --parallel is not given


def assign_waves(steps: list[Step], wave_by: WaveBy, parallel: int | None) -> list[Step]:
    """Group acting steps into waves.

    update-domain: the VMs of one availability set go one update domain at a time (never two UDs
    of a set in one wave); VMs of other sets, or of none, share waves up to `parallel` per wave
    (WAVE_SIZE without --parallel: a wave is a blast radius, not a throughput setting).
    tag:KEY: one wave per tag value (sorted; VMs without the tag last). none: one wave.
    """
    acting = [s for s in steps if s.acts]
    waves: list[list[Step]] = []
    if wave_by.mode == "none":
        waves = [acting] if acting else []
    elif wave_by.mode == "tag":
        key = wave_by.key
        groups: dict[tuple[int, str], list[Step]] = {}
        for s in acting:
            value = s.vm.tag(key)
            groups.setdefault((value is None, value or ""), []).append(s)
        waves = [groups[k] for k in sorted(groups)]
    else:
        sets: dict[str, dict[tuple[int, int], list[Step]]] = {}
        loose: list[Step] = []
        for s in acting:
            if s.vm.availability_set:
                key = f"{s.vm.subscription_id}/{s.vm.resource_group.lower()}/{s.vm.availability_set.lower()}"
                # a member whose update domain is unknown is a domain of its own: it never shares
                # a wave with another member of its set (fail closed)
                ud = (0, s.vm.update_domain) if s.vm.update_domain is not None else (1, s.index)
                sets.setdefault(key, {}).setdefault(ud, []).append(s)
            else:
                loose.append(s)
        cap = max(1, parallel or WAVE_SIZE)
        for by_ud in sets.values():
            w = 0
            for ud in sorted(by_ud):
                members = by_ud[ud]
                for chunk in (members[j:j + cap] for j in range(0, len(members), cap)):
                    # the first wave at or after w with room, holding no other UD of this set
                    while w < len(waves) and len(waves[w]) + len(chunk) > cap:
                        w += 1
                    if w == len(waves):
                        waves.append([])
                    waves[w].extend(chunk)
                    w += 1
        w = 0
        for s in loose:
            while w < len(waves) and len(waves[w]) >= cap:
                w += 1
            if w == len(waves):
                waves.append([])
            waves[w].append(s)
    wave_of = {s.index: n for n, members in enumerate(waves) for s in members}
    return [replace(s, wave=wave_of.get(s.index)) for s in steps]


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- JSON (plan.json, the journal's first line)
_Json = dict[str, Any]  # a saved plan's JSON, read only by plan_from_json and its two helpers below

def step_json(s: Step) -> dict[str, object]:
    from .views import vm_json

    return {"index": s.index, "vm": vm_json(s.vm, datetime.now(timezone.utc)), "action": s.action, "skip": s.skip,
            "detail": s.detail, "hibernate": s.hibernate, "path": s.path, "wave": s.wave, "model": vm_model(s.vm),
            "source": s.source, "recheck": s.recheck}


def vm_model(vm: Vm) -> dict[str, object]:
    """The saved plan's own, lossless form of a VM: every field of the model, JSON-safe (`vm` beside
    it is the display form, which rounds some facts off: a Low priority shows as the spot flag)."""
    out = asdict(vm)
    out["zones"] = list(vm.zones)
    m = vm.maintenance
    out["maintenance"] = None if m is None else {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(m).items()}
    return out


def _vm_from_model(d: _Json) -> Vm:
    from .models import Maintenance

    fields = dict(d)
    m = fields.pop("maintenance")
    maint = None
    if m is not None:
        def t(key: str) -> datetime | None:
            return parse_iso(m[key]) if m.get(key) else None
        maint = Maintenance(bool(m["allowed"]), t("self_service_start"), t("self_service_end"), t("scheduled_start"),
                            t("scheduled_end"), m.get("last_result"), m.get("last_message"))
    fields["zones"] = tuple(fields["zones"])
    fields["tags"] = dict(fields["tags"])
    return Vm(**fields, maintenance=maint)



def plan_json(plan: Plan) -> dict[str, object]:
    from .batch import chunks_json

    return {"runId": plan.run_id, "verb": plan.verb, "action": plan.action, "createdAt": plan.created_at,
            "options": {**asdict(plan.options), "wave_by": str(plan.options.wave_by)}, "refusals": list(plan.refusals), "totals": plan.totals,
            "setSizes": plan.set_sizes,
            "summary": plan.summary(), "steps": [step_json(s) for s in plan.steps], "source": plan.source,
            "coverage": plan.coverage.as_json() if plan.coverage is not None else None, "chunks": chunks_json(plan)}


def _vm_from_display(d: _Json) -> Vm:
    from .models import Maintenance

    m = d.get("maintenance")
    maint = None
    if m:
        def ts(x: str | None) -> datetime | None:
            return parse_iso(x) if x else None
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
              production=d["production"], unreadable=d.get("unreadable") or "",
              maintenance_known=d.get("maintenanceKnown", True))


def plan_from_json(doc: Mapping[str, object]) -> Plan:
    """A plan from its JSON: lossless from each step's `model`; plans saved before it existed fall
    back to the display form. A document of another shape raises KeyError, TypeError or ValueError
    (callers say which file is damaged)."""
    d: _Json = dict(doc)
    steps = tuple(Step(s["index"], _vm_from_model(s["model"]) if s.get("model") else _vm_from_display(s["vm"]),
                       s["action"], s["skip"], s["detail"], s["hibernate"],
                       s["path"], s.get("wave"), _source(s.get("source")), str(s.get("recheck") or ""))
                  for s in d["steps"])
    opts = dict(d["options"])
    opts["hook_env"] = tuple(opts.get("hook_env") or ())
    opts["wave_by"] = WaveBy.parse(opts.get("wave_by") or "update-domain")
    coverage: CoverageJson | None = d.get("coverage")
    return Plan(run_id=d["runId"], verb=d["verb"], action=d["action"], steps=steps, options=Options(**opts),
                created_at=d["createdAt"], refusals=tuple(d["refusals"]), totals=dict(d.get("totals") or {}),
                set_sizes=dict(d.get("setSizes") or {}), source=_source(d.get("source")),
                coverage=Coverage.from_json(coverage) if coverage else None)


def _source(value: object) -> FactSource:
    """A saved plan's `source` (plans saved before it existed: arm)."""
    return "graph" if value == "graph" else "arm"
