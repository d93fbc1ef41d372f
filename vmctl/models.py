"""Frozen dataclasses that cross module lines. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from .journal import RecordFields

# The ARM actions vmctl sends, and how a step of a run can end.
Action = Literal["powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy"]
OutcomeStatus = Literal["succeeded", "failed", "preempted", "unknown", "skipped", "cancelled", "in-flight"]
# Why a step does not act: planned (the planner's SKIP_TEXT), or found at run time (the last two).
SkipCode = Literal["unreadable", "state-unknown", "already-in-target-state", "production", "scale-set-member",
                   "ephemeral-os-disk", "hibernation-not-enabled", "hibernation-needs-running", "provisioning-failed",
                   "operation-in-progress", "not-running", "maintenance-not-pending", "maintenance-not-allowed",
                   "self-service-window-not-open", "self-service-window-closed", "deallocated",
                   "pre-hook-failed", "vm-not-found", "selection-changed"]
# Where the facts a step was decided on came from: ARM's listings (or instance views), or Azure
# Resource Graph alone (a snapshot up to a minute old; never the facts of a step that acts).
FactSource = Literal["arm", "graph"]
CoverageScope = Literal["subscriptions", "tenant", "managementGroup"]
WaveMode = Literal["update-domain", "tag", "none"]
Engine = Literal["arm", "batch"]
HibernateFallback = Literal["fail", "deallocate"]


@dataclass(frozen=True)
class WaveBy:
    """How `maintenance start` groups VMs into waves: `update-domain`, `tag:KEY` or `none`."""

    mode: WaveMode = "update-domain"
    key: str = ""   # the tag key, for mode "tag"

    @classmethod
    def parse(cls, text: str) -> WaveBy:
        """ValueError when `text` is not update-domain, tag:KEY or none."""
        if text == "update-domain":
            return cls("update-domain")
        if text == "none":
            return cls("none")
        if text.startswith("tag:") and len(text) > 4:
            return cls("tag", text[4:])
        raise ValueError(f"'{text}' is not update-domain, tag:KEY or none")

    def __str__(self) -> str:
        return f"tag:{self.key}" if self.mode == "tag" else self.mode


# outcomes where the operator's intent was not carried out: they count as failures for the exit code
FAILED_OUTCOMES: frozenset[OutcomeStatus] = frozenset({"failed", "preempted", "unknown"})

# Power states as vmctl names them (the part after "PowerState/").
POWER_STATES = ("running", "starting", "stopping", "stopped", "deallocating", "deallocated", "unknown")


@dataclass(frozen=True)
class Maintenance:
    """A VM's maintenanceRedeployStatus: present only when platform maintenance is pending."""

    allowed: bool
    self_service_start: datetime | None = None
    self_service_end: datetime | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    last_result: str | None = None
    last_message: str | None = None

    def can_start_now(self, now: datetime) -> bool:
        """Customer-initiated maintenance is possible: allowed, and inside the self-service window."""
        if not self.allowed:
            return False
        if self.self_service_start and now < self.self_service_start:
            return False
        if self.self_service_end and now > self.self_service_end:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Vm:
    subscription_id: str
    resource_group: str
    name: str
    id: str
    location: str
    size: str = ""
    power_state: str = "unknown"
    provisioning_state: str = ""
    subscription_name: str = ""
    hibernated: bool = False
    availability_set: str | None = None
    update_domain: int | None = None
    fault_domain: int | None = None
    zones: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    maintenance: Maintenance | None = None
    ephemeral_os_disk: bool = False
    hibernation_enabled: bool = False
    priority: str = "Regular"
    scale_set: str | None = None
    os_type: str = ""
    production: bool = False
    # Why vmctl could not read this VM's tags and properties ("" = it could): such a VM counts as
    # production and no tag selector matches it, since no guard may rely on data that was absent.
    unreadable: str = ""
    # False when no source read so far carries maintenanceRedeployStatus (Azure's status listing
    # may leave it out): `maintenance` None then means "not read", not "none pending".
    maintenance_known: bool = True

    @property
    def key(self) -> str:
        """Case-insensitive identity (Azure resource IDs are case-insensitive)."""
        return self.id.lower()

    @property
    def stopped_but_billed(self) -> bool:
        return self.power_state == "stopped"

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        if self.ephemeral_os_disk:
            out.append("ephemeral-os")
        if self.hibernation_enabled:
            out.append("hibernation")
        if self.priority in ("Spot", "Low"):
            out.append("spot")
        if self.scale_set:
            out.append("vmss")
        return tuple(out)

    def tag(self, name: str) -> str | None:
        """Tag value by case-insensitive name, as Azure treats tag names."""
        low = name.lower()
        for k, v in self.tags.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True, slots=True)
class VmStatus:
    """What a status listing item or an instance view says about a VM's run-time state."""

    power_state: str = "unknown"
    provisioning_state: str = ""
    hibernated: bool = False
    update_domain: int | None = None
    fault_domain: int | None = None
    maintenance: Maintenance | None = None
    maintenance_known: bool = False   # the source carries maintenanceRedeployStatus where pending
    read: bool = True                 # False: the source had no status for this VM


class CoverageJson(TypedDict):
    """What a Resource Graph inventory covered (the `coverage` key of vm-list and plan JSON)."""

    scope: CoverageScope
    managementGroup: str | None
    asked: list[str] | None          # null for a management group (its subscriptions are Azure's to know)
    unreadable: list[str]
    withVms: list[str]
    withoutVms: list[str]
    tenantSubscriptionLimitHit: bool
    queries: int
    throttled: int
    maxAgeSeconds: int


@dataclass(frozen=True)
class Coverage:
    """What a Resource Graph inventory covered: subscriptions asked for versus those that returned
    rows, never assumed. Resource Graph drops a subscription the caller cannot read without a word
    (wire §13.3), so `unreadable` comes from ARM's GET /subscriptions: an asked subscription absent
    there. A readable one that returned no row has no VMs."""

    scope: CoverageScope
    management_group: str | None = None
    asked: tuple[str, ...] | None = ()       # None for a management group
    unreadable: tuple[str, ...] = ()
    with_vms: tuple[str, ...] = ()
    without_vms: tuple[str, ...] = ()
    tenant_limit_hit: bool = False   # x-ms-tenant-subscription-limit-hit: only the first 10,000 were covered
    queries: int = 0
    throttled: int = 0               # 429s met (and waited out)
    max_age_seconds: int = 60        # Resource Graph's documented staleness

    def as_json(self) -> CoverageJson:
        return {"scope": self.scope, "managementGroup": self.management_group,
                "asked": None if self.asked is None else list(self.asked), "unreadable": list(self.unreadable),
                "withVms": list(self.with_vms), "withoutVms": list(self.without_vms),
                "tenantSubscriptionLimitHit": self.tenant_limit_hit, "queries": self.queries,
                "throttled": self.throttled, "maxAgeSeconds": self.max_age_seconds}

    @classmethod
    def from_json(cls, d: CoverageJson) -> Coverage:
        asked = d.get("asked")
        return cls(d["scope"], d.get("managementGroup"), None if asked is None else tuple(asked),
                   tuple(d.get("unreadable") or ()), tuple(d.get("withVms") or ()), tuple(d.get("withoutVms") or ()),
                   bool(d.get("tenantSubscriptionLimitHit")), int(d.get("queries") or 0), int(d.get("throttled") or 0),
                   int(d.get("maxAgeSeconds") or 60))


@dataclass(frozen=True)
class Fact:
    """For a plan built from Resource Graph: where one VM's facts came from, what the ARM re-check
    found different, and the skip it forces (the VM is gone, no longer selected, or could not be
    re-read)."""

    source: FactSource
    note: str = ""
    skip: SkipCode | None = None


# ---------------------------------------------------------------- plans (built by the planner, run by the executor)
TARGET = {"powerOff": "stopped", "deallocate": "deallocated", "start": "running", "restart": "running",
          "performMaintenance": "running"}
TRANSITIONAL = {"starting", "stopping", "deallocating"}
BUSY_PROVISIONING = {"updating", "creating", "deleting"}


def vm_busy(power: str, provisioning: str) -> bool:
    return power in TRANSITIONAL or provisioning.lower() in BUSY_PROVISIONING


def at_target(action: str | None, power: str, provisioning: str) -> bool:
    """Settled at what the action leads to. A restart's target is where it began: never proof."""
    return action != "restart" and power == TARGET.get(action or "") and not vm_busy(power, provisioning) \
        and provisioning.lower() != "failed"


@dataclass(frozen=True)
class Options:
    skip_shutdown: bool = False
    hibernate: bool = False
    hibernate_fallback: HibernateFallback = "fail"
    include_production: bool = False
    max_targets: int = 50
    max_percent: float | None = None
    parallel: int | None = None      # an upper bound on steps in flight; None: the platform's budgets
    timeout: float = 3600.0
    pre_hook: str | None = None
    post_hook: str | None = None
    hook_timeout: float = 300.0
    hook_env: tuple[str, ...] = ()   # variables passed to hooks on top of the allow-list
    ticket: str | None = None
    wave_by: WaveBy = WaveBy()       # maintenance: how VMs are grouped into waves
    pause: float = 300.0             # maintenance: seconds between waves
    engine: Engine = "arm"           # resolved (never "auto"): arm, or batch (ComputeSchedule, vmctl/batch.py)
    engine_note: str = ""            # why that engine (shown with the plan)
    retry_count: int = 0             # batch: ComputeSchedule's retryPolicy.retryCount (0: one attempt)
    retry_window: int = 0            # batch: retryPolicy.retryWindowInMinutes


@dataclass(frozen=True)
class Step:
    index: int
    vm: Vm
    action: Action | None       # the ARM action when the step acts; None when skipped
    skip: SkipCode | None = None  # why it does not act
    detail: str = ""            # the consequence (acting) or the reason (skipped)
    hibernate: bool = False
    path: str = ""              # for deallocate --hibernate: "hibernate" or "deallocate (fallback)"
    wave: int | None = None     # maintenance: the wave this step runs in (0-based)
    source: FactSource = "arm"  # where the facts this step was decided on came from
    recheck: str = ""           # a plan from Resource Graph: what ARM said differently ("" when it agreed)

    @property
    def acts(self) -> bool:
        return self.action is not None


class PlanSummary(TypedDict):
    targets: int
    acting: int
    actions: dict[str, int]
    skipped: dict[str, int]
    leftStoppedButBilled: int
    production: int
    waves: NotRequired[int]


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
    set_sizes: dict[str, int] = field(default_factory=dict)  # availability set -> all its VMs (wave shares)
    source: FactSource = "arm"  # where the inventory was read: ARM's listings or Azure Resource Graph
    coverage: Coverage | None = None  # with Resource Graph: what the inventory covered

    @property
    def waves(self) -> list[list[Step]]:
        n = max((s.wave for s in self.steps if s.wave is not None), default=-1) + 1
        return [[s for s in self.steps if s.wave == w] for w in range(n)]

    @property
    def acting(self) -> list[Step]:
        return [s for s in self.steps if s.acts]

    @property
    def production_acting(self) -> list[Step]:
        return [s for s in self.steps if s.acts and s.vm.production]

    def summary(self) -> PlanSummary:
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
        out: PlanSummary = {"targets": len(self.steps), "acting": sum(acts.values()), "actions": acts, "skipped": skips,
               "leftStoppedButBilled": left_billed, "production": len(self.production_acting)}
        if self.action == "performMaintenance":
            out["waves"] = len(self.waves)
        return out


@dataclass(frozen=True)
class Outcome:
    """How one step of a run ended (the journal's `outcome` record)."""

    index: int
    status: OutcomeStatus
    reason: str = ""
    retries: int = 0
    correlation_id: str | None = None
    duration: float | None = None
    path: str = ""
    operation_id: str | None = None  # batch engine: the VM's ComputeSchedule operationId

    def record(self, vm_id: str, skip_code: str | None = None) -> RecordFields:
        """The journal's `outcome` record."""
        out: RecordFields = {"vm": vm_id, "skipCode": skip_code, "index": self.index, "status": self.status,
                             "reason": self.reason, "retries": self.retries, "correlationId": self.correlation_id,
                             "duration": self.duration, "path": self.path}
        if self.operation_id is not None:
            out["operationId"] = self.operation_id
        return out
