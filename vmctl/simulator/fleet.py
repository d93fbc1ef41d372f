"""Fleet files: the YAML description of what the simulator serves.

The format is user-facing (operators rehearse against it), so errors name the exact place in the
file and what was expected. Relative times ("-1d", "6d", "90m") are resolved against the moment
the fleet is loaded or reset.

Defaults follow Azure where public evidence exists and are otherwise the stricter case; the other
case is an option under `platform:` (docs/simulator.md, "What is modelled, and on what evidence").
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

LRO_OPERATIONS = ("powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy")

# Nominal durations, from the status documents (endTime - startTime) of a real recording:
# azure-sdk-for-python sdk/compute/azure-mgmt-compute/tests/recordings/
# test_mgmt_compute_vm.pyTestMgmtComputetest_compute_vm.json (April 2023, eastus, Standard_D2_v2):
# powerOff 10.8 s and 18.1 s, start 35.6 s, restart 45.9 s, redeploy 112.4 s, deallocate (of a
# stopped VM) 31.4 s. performMaintenance has no recording: taken as long as redeploy (assumption).
# Each operation's duration is multiplied by a random factor in [1 - jitter, 1 + jitter].
DEFAULT_LRO_SECONDS: dict[str, float] = {
    "powerOff": 15.0,
    "deallocate": 35.0,
    "start": 35.0,
    "restart": 45.0,
    "performMaintenance": 110.0,
    "redeploy": 110.0,
}

# Activity Log ingestion delay: "Activity logs are available for analysis and alerting in 3 to
# 20 minutes" (MicrosoftDocs/azure-monitor-docs articles/azure-monitor/logs/data-ingestion-time.md).
# 240 s with the default jitter of 0.25 puts every event between 180 s and 300 s.
DEFAULT_ACTIVITY_LOG_DELAY_SECONDS = 240.0
DEFAULT_JITTER = 0.25

BUSY_MODES = ("preempt", "refuse")
STATUS_ONLY_SHAPES = ("sparse", "full")

POWER_STATES = ("running", "stopped", "deallocated")


class FleetError(ValueError):
    """A fleet file that cannot be loaded; the message names the place and the fix."""


@dataclass
class MaintenanceSpec:
    allowed: bool
    self_service_window: tuple[datetime, datetime] | None
    scheduled_window: tuple[datetime, datetime] | None
    last_result: str = "None"
    last_message: str = ""


@dataclass
class VmSpec:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    size: str
    tags: dict[str, str] = field(default_factory=dict)
    zones: list[str] = field(default_factory=list)
    availability_set: str | None = None
    update_domain: int | None = None
    fault_domain: int | None = None
    power_state: str = "running"
    hibernated: bool = False
    provisioning_state: str = "Succeeded"
    os_type: str = "Linux"
    ephemeral_os_disk: str | None = None  # placement when ephemeral: CacheDisk | ResourceDisk
    hibernation_enabled: bool = False
    priority: str = "Regular"
    scale_set: str | None = None
    maintenance: MaintenanceSpec | None = None
    extensions: list[str] = field(default_factory=list)
    vm_id: str = ""
    status_in_list: bool = True  # False: statusOnly lists omit this VM's instanceView


@dataclass
class AvailabilitySetSpec:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    update_domains: int
    fault_domains: int


@dataclass
class SubscriptionSpec:
    id: str
    name: str
    resource_groups: dict[str, str]  # name -> location
    readable: bool = True  # False: the caller has no role on it (absent from GET /subscriptions, 403, dropped by ARG)


@dataclass
class ManagementGroupSpec:
    """A management group over subscriptions (and child groups), for Resource Graph's MG scope."""
    name: str
    subscriptions: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class GraphSpec:
    """Azure Resource Graph (wire §13): each default is the documented value or the stricter case."""
    lag_seconds: float = 60.0                 # "may not be reflected for up to 60 seconds": the whole minute
    quota: int = 15                           # queries per window per principal (the documented example)
    quota_window_seconds: float = 5.0
    retry_after_on_429: bool = False          # whether a 429 carries Retry-After: not established
    tenant_subscription_limit: int = 10_000   # tenant / management-group scope covers at most this many


@dataclass
class FaultSpec:
    operation: str = "*"
    vm: str | None = None
    error: str = "500"
    times: int | None = 1  # None = always
    message: str | None = None
    delay_seconds: float = 0.0
    retry_after: int | None = None


@dataclass
class ThrottleSpec:
    enabled: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlatformSpec:
    """Platform behaviours whose Azure default is not (fully) established: the default is the
    stricter or the captured case, the other one is chosen here."""
    status_only_items: str = "sparse"           # sparse (the real capture) | full
    maintenance_in_status_list: bool = False    # statusOnly items carry maintenanceRedeployStatus
    busy_default: str = "preempt"               # a second operation on a busy VM: preempt | refuse
    busy_pairs: dict[tuple[str, str], str] = field(default_factory=dict)  # (new, running) -> mode
    op_visible_after_seconds: float = 0.0       # a running operation shows on the VM's reads this late
    resource_graph: GraphSpec = field(default_factory=GraphSpec)

    def busy_mode(self, new: str, running: str) -> str:
        return self.busy_pairs.get((new, running), self.busy_default)


EVENT_TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")

# Minimum notice (Scheduled -> NotBefore), wire §14.2 [DOC]: Freeze 15 min, Reboot 15 min, Redeploy
# 10 min, Preempt 30 s, Terminate 5-15 min (configurable on the scale set; 5 min, the shortest, here).
MIN_NOTICE_SECONDS: dict[str, float] = {
    "Freeze": 900.0, "Reboot": 900.0, "Redeploy": 600.0, "Preempt": 30.0, "Terminate": 300.0,
}
EVENT_DESCRIPTIONS: dict[str, str] = {
    "Freeze": "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
    "Reboot": "Host server is undergoing maintenance.",
    "Redeploy": "Host server is undergoing maintenance.",
    "Preempt": "Virtual machine is being evicted because of a Spot capacity change.",
    "Terminate": "Virtual machine is being deleted.",
}


@dataclass
class EventSpec:
    """A Scheduled Event from the fleet file (`scheduled_events:`), for the VMs named in `vms`."""
    type: str
    vms: list[str]
    at: float                       # seconds after load/reset when the event is scheduled
    notice: float | None            # Scheduled -> NotBefore, seconds; None: starts at once (hardware failure)
    duration_seconds: int
    description: str
    source: str = "Platform"


@dataclass
class ImdsSpec:
    """IMDS behaviours (wire §14); each default is the documented bound or the stricter case."""
    first_call_seconds: float = 120.0     # "the first call may take up to 2 minutes"
    events_flow_seconds: float = 300.0    # "events flow within 5 minutes" of the first call
    started_seconds: float = 600.0        # Started -> removed, "about 10 min" (mock server median)
    idle_off_seconds: float = 86400.0     # the service switches off after 24 h without a call
    rate_per_second: float = 5.0          # "5 requests per second per VM", excess -> 429
    approval_start_seconds: float = 15.0  # approval ends the wait "when possible": not at once (not established)


@dataclass
class ScheduleSpec:
    """ComputeSchedule timings (schedule.py; wire §12.4). A real ExecuteStart showed `Executing` 3 s
    after the request; the split between the two queued states and the retry delay are assumptions."""
    scheduling_seconds: float = 1.0     # PendingScheduling
    queue_seconds: float = 2.0          # PendingExecution, before the VM operation starts
    retry_delay_seconds: float = 60.0   # a failed attempt -> the next one (within retryWindowInMinutes)
    blocked_seconds: float = 600.0      # a `Blocked` fault without delay_seconds


def parse_schedule(raw: Any, where: str = "computeschedule") -> ScheduleSpec:
    c = _check_keys(raw or {}, {"scheduling_seconds", "queue_seconds", "retry_delay_seconds", "blocked_seconds"},
                    where)
    spec = ScheduleSpec()
    for key in c:
        setattr(spec, key, _seconds(c[key], f"{where}.{key}"))
    return spec


@dataclass
class Fleet:
    tenant_id: str
    subscriptions: list[SubscriptionSpec]
    vms: list[VmSpec]
    availability_sets: list[AvailabilitySetSpec]
    lro_seconds: dict[str, float]
    activity_log_delay_seconds: float
    lro_retry_after: float | None  # None: no Retry-After header, as Compute sends none
    token_lifetime_seconds: float
    vm_page_size: int
    activity_page_size: int
    identity: dict[str, str]
    faults: list[FaultSpec]
    throttling: ThrottleSpec
    jitter: float = DEFAULT_JITTER
    seed: int | None = None
    resource_page_size: int = 1000
    platform: PlatformSpec = field(default_factory=PlatformSpec)
    scheduled_events: list[EventSpec] = field(default_factory=list)
    imds: ImdsSpec = field(default_factory=ImdsSpec)
    management_groups: dict[str, ManagementGroupSpec] = field(default_factory=dict)

    def management_group_subscriptions(self, name: str) -> list[str] | None:
        """Every subscription under the group (its children's too), or None for an unknown group."""
        groups = {k.lower(): g for k, g in self.management_groups.items()}
        if name.lower() not in groups:
            return None
        out: list[str] = []
        todo, seen = [name.lower()], set()
        while todo:
            g = groups[todo.pop()]
            if g.name.lower() in seen:
                continue
            seen.add(g.name.lower())
            out += [s for s in g.subscriptions if s not in out]
            todo += [c.lower() for c in g.children]
        return out
    computeschedule: ScheduleSpec = field(default_factory=ScheduleSpec)


MAX_COUNT = 100_000            # VMs one generator entry may expand to
MAX_PAGE_SIZE = 100_000        # paging.*: items per page
MAX_SPAN_SECONDS = 3650 * 86400.0   # any duration or relative time: 10 years
MAX_OPERATION_SECONDS = 7 * 86400.0  # an LRO, an Activity Log delay, a fault's delay: a week
MAX_TOKEN_SECONDS = 86400.0    # Azure's managed-identity tokens live up to 24 h

_DURATION = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: Any, where: str) -> float:
    """Seconds from "90", "45s", "30m", "-1d", "2h"; raises FleetError naming `where`."""
    if isinstance(text, bool):
        raise FleetError(f"{where}: expected a duration like 30s, 5m, 2h or -1d, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise FleetError(f"{where}: expected a duration like 30s, 5m, 2h or -1d, got {text!r}")
        sign = -1.0 if m.group(1) == "-" else 1.0
        value = sign * float(m.group(2)) * _UNIT_SECONDS[m.group(3)]
    if not math.isfinite(value) or abs(value) > MAX_SPAN_SECONDS:
        raise FleetError(f"{where}: expected a finite duration of at most 10 years (3650d), got {text!r}")
    return value


def _seconds(text: Any, where: str, *, maximum: float = MAX_OPERATION_SECONDS, positive: bool = False) -> float:
    """A duration that cannot be negative (an LRO, a delay), or zero with `positive`."""
    value = parse_duration(text, where)
    if value < 0 or (positive and value == 0) or value > maximum:
        low = "above 0" if positive else "from 0"
        raise FleetError(f"{where}: expected a duration {low} up to {maximum:g} s, got {text!r}")
    return value


def _whole(value: Any, where: str, *, low: int = 1, high: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FleetError(f"{where}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _when(value: Any, now: datetime, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value)
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FleetError(f"{where}: not an ISO-8601 time: {text!r}") from exc
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return now + timedelta(seconds=parse_duration(text, where))


def _window(value: Any, now: datetime, where: str) -> tuple[datetime, datetime] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise FleetError(f"{where}: expected [start, end], e.g. [-1d, 6d], got {value!r}")
    start, end = _when(value[0], now, f"{where}[0]"), _when(value[1], now, f"{where}[1]")
    if end <= start:
        raise FleetError(f"{where}: the window ends before it starts ({value!r})")
    return start, end


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FleetError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise FleetError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}"
        )
    return obj


_VM_KEYS = {
    "name", "count", "start", "location", "size", "tags", "zone", "zones", "availability_set",
    "power_state", "hibernated", "provisioning_state", "os", "os_disk", "hibernation", "priority",
    "scale_set", "maintenance", "extensions", "status_in_list",
}


def _vm_entries(
    raw: dict[str, Any], where: str, sub: str, rg: str, location: str, defaults: dict[str, Any],
    now: datetime, as_counters: dict[str, list[int]],
    as_specs: dict[str, AvailabilitySetSpec],
) -> list[VmSpec]:
    _check_keys(raw, _VM_KEYS, where)
    if "name" not in raw:
        raise FleetError(f"{where}: every VM needs a name")
    count = raw.get("count")
    if count is not None:
        count = _whole(count, f"{where}.count", high=MAX_COUNT)
    first = _whole(raw.get("start", 1), f"{where}.start", low=0, high=10**9)
    names: list[str]
    template = str(raw["name"])
    if count is None:
        names = [template]
    else:
        try:
            names = [template.format(i=i) for i in range(first, first + count)]
        except (KeyError, IndexError, ValueError) as exc:
            raise FleetError(
                f"{where}.name: {template!r} must use {{i}} (e.g. \"web-{{i:02d}}\") with count"
            ) from exc
        if len(set(names)) != len(names):
            raise FleetError(f"{where}.name: {template!r} does not make unique names; add {{i}}")
    power = str(raw.get("power_state", "running")).lower()
    hibernated = bool(raw.get("hibernated", False))
    if power == "hibernated":
        power, hibernated = "deallocated", True
    if power not in POWER_STATES:
        raise FleetError(
            f"{where}.power_state: expected one of running, stopped, deallocated, hibernated; got {power!r}"
        )
    os_disk = raw.get("os_disk", "managed")
    if os_disk not in ("managed", "ephemeral", "ephemeral-cache", "ephemeral-resource"):
        raise FleetError(f"{where}.os_disk: expected managed or ephemeral, got {os_disk!r}")
    ephemeral = None if os_disk == "managed" else (
        "ResourceDisk" if os_disk == "ephemeral-resource" else "CacheDisk"
    )
    priority = str(raw.get("priority", "Regular"))
    if priority not in ("Regular", "Low", "Spot"):
        raise FleetError(f"{where}.priority: expected Regular or Spot, got {priority!r}")
    tags = raw.get("tags") or {}
    if not isinstance(tags, dict):
        raise FleetError(f"{where}.tags: expected a mapping of tag names to values")
    zones_raw = raw.get("zones", [raw["zone"]] if "zone" in raw else [])
    zones = [str(z) for z in zones_raw]
    avset = raw.get("availability_set")
    if avset is not None and avset not in as_specs:
        known = ", ".join(sorted(as_specs)) or "none defined"
        raise FleetError(
            f"{where}.availability_set: {avset!r} is not defined in this resource group "
            f"(availability sets: {known})"
        )
    if avset and zones:
        raise FleetError(f"{where}: a VM is either in an availability set or in a zone, not both")
    maint = None
    if raw.get("maintenance") is not None:
        m = _check_keys(
            raw["maintenance"],
            {"allowed", "self_service_window", "scheduled_window", "last_result", "last_message"},
            f"{where}.maintenance",
        )
        maint = MaintenanceSpec(
            allowed=bool(m.get("allowed", False)),
            self_service_window=_window(m.get("self_service_window"), now, f"{where}.maintenance.self_service_window"),
            scheduled_window=_window(m.get("scheduled_window"), now, f"{where}.maintenance.scheduled_window"),
            last_result=str(m.get("last_result", "None")),
            last_message=str(m.get("last_message", "")),
        )
    prov = str(raw.get("provisioning_state", "Succeeded"))
    out = []
    for name in names:
        ud = fd = None
        if avset:
            spec = as_specs[avset]
            k = as_counters[avset][0]
            as_counters[avset][0] += 1
            ud, fd = k % spec.update_domains, k % spec.fault_domains
        out.append(VmSpec(
            subscription_id=sub, resource_group=rg, name=name,
            location=str(raw.get("location", location)),
            size=str(raw.get("size", defaults.get("size", "Standard_D2s_v5"))),
            tags={str(k): str(v) for k, v in tags.items()},
            zones=zones, availability_set=avset, update_domain=ud, fault_domain=fd,
            power_state=power, hibernated=hibernated, provisioning_state=prov,
            os_type="Windows" if str(raw.get("os", defaults.get("os", "linux"))).lower() == "windows" else "Linux",
            ephemeral_os_disk=ephemeral, hibernation_enabled=bool(raw.get("hibernation", False)),
            priority=priority, scale_set=raw.get("scale_set"), maintenance=maint,
            extensions=[str(e) for e in raw.get("extensions", [])],
            status_in_list=bool(raw.get("status_in_list", True)),
            vm_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sub}/{rg}/{name}".lower())),
        ))
    return out


def _fault(raw: Any, where: str) -> FaultSpec:
    f = _check_keys(raw, {"vm", "operation", "error", "times", "message", "delay_seconds", "retry_after"}, where)
    times = f.get("times", 1)
    if times in ("always", None):
        times = None
    elif not isinstance(times, int) or times < 1:
        raise FleetError(f"{where}.times: expected a positive whole number or 'always', got {times!r}")
    return FaultSpec(
        operation=str(f.get("operation", "*")), vm=f.get("vm"), error=str(f.get("error", "500")),
        times=times, message=f.get("message"),
        delay_seconds=_seconds(f.get("delay_seconds", 0), f"{where}.delay_seconds"),
        retry_after=None if f.get("retry_after") is None else _whole(
            f.get("retry_after"), f"{where}.retry_after", low=0, high=86400),
    )


def parse_faults(raw: Any, where: str = "faults") -> list[FaultSpec]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise FleetError(f"{where}: expected a list of fault rules")
    return [_fault(r, f"{where}[{i}]") for i, r in enumerate(raw)]


_TOP_KEYS = {"tenant_id", "defaults", "time", "paging", "identity", "subscriptions", "faults", "throttling",
             "platform", "scheduled_events", "imds", "management_groups", "computeschedule"}
_PAIR = re.compile(r"^\s*(\w+)\s+over\s+(\w+)\s*$")


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise FleetError(f"{where}: expected {' or '.join(allowed)}, got {value!r}")
    return value.lower()


def parse_platform(raw: Any, where: str = "platform") -> PlatformSpec:
    p = _check_keys(raw or {}, {"status_only_items", "maintenance_in_status_list", "busy_vm",
                                "op_visible_after_seconds", "resource_graph"}, where)
    spec = PlatformSpec()
    if "resource_graph" in p:
        spec.resource_graph = parse_graph(p["resource_graph"], f"{where}.resource_graph")
    if "op_visible_after_seconds" in p:
        spec.op_visible_after_seconds = _number(p["op_visible_after_seconds"], f"{where}.op_visible_after_seconds",
                                                high=3600.0)
    if "status_only_items" in p:
        spec.status_only_items = _choice(p["status_only_items"], STATUS_ONLY_SHAPES, f"{where}.status_only_items")
    if "maintenance_in_status_list" in p:
        flag = p["maintenance_in_status_list"]
        if not isinstance(flag, bool):
            raise FleetError(f"{where}.maintenance_in_status_list: expected true or false, got {flag!r}")
        spec.maintenance_in_status_list = flag
    busy = p.get("busy_vm")
    if busy is not None:
        if not isinstance(busy, dict):
            raise FleetError(f"{where}.busy_vm: expected a mapping like {{default: preempt, \"start over deallocate\": refuse}}")
        for key, value in busy.items():
            w = f"{where}.busy_vm.{key}" if key == "default" else f'{where}.busy_vm."{key}"'
            mode = _choice(value, BUSY_MODES, w)
            if key == "default":
                spec.busy_default = mode
                continue
            m = _PAIR.match(str(key))
            if not m:
                raise FleetError(
                    f'{where}.busy_vm: unknown key {key!r}; use default or "<new> over <running>", '
                    f"e.g. \"start over deallocate\" (operations: {', '.join(LRO_OPERATIONS)})"
                )
            pair = []
            for op in m.groups():
                canon = {o.lower(): o for o in LRO_OPERATIONS}.get(op.lower())
                if canon is None:
                    raise FleetError(f"{w}: unknown operation {op!r}; known: {', '.join(LRO_OPERATIONS)}")
                pair.append(canon)
            spec.busy_pairs[(pair[0], pair[1])] = mode
    return spec


def parse_graph(raw: Any, where: str) -> GraphSpec:
    g = _check_keys(raw or {}, {"lag_seconds", "quota", "retry_after_on_429", "tenant_subscription_limit"}, where)
    spec = GraphSpec()
    if "lag_seconds" in g:
        spec.lag_seconds = _seconds(g["lag_seconds"], f"{where}.lag_seconds", maximum=86400.0)
    if "quota" in g:
        q = _check_keys(g["quota"], {"queries", "window_seconds"}, f"{where}.quota")
        if "queries" in q:
            spec.quota = _whole(q["queries"], f"{where}.quota.queries", high=1_000_000)
        if "window_seconds" in q:
            spec.quota_window_seconds = _seconds(q["window_seconds"], f"{where}.quota.window_seconds",
                                                 maximum=3600.0, positive=True)
    if "retry_after_on_429" in g:
        flag = g["retry_after_on_429"]
        if not isinstance(flag, bool):
            raise FleetError(f"{where}.retry_after_on_429: expected true or false, got {flag!r}")
        spec.retry_after_on_429 = flag
    if "tenant_subscription_limit" in g:
        spec.tenant_subscription_limit = _whole(g["tenant_subscription_limit"], f"{where}.tenant_subscription_limit",
                                                high=1_000_000)
    return spec


def parse_management_groups(raw: Any, subscription_ids: set[str], where: str = "management_groups") -> dict[str, ManagementGroupSpec]:
    """`[{name, subscriptions: [ids], children: [group names]}]`: ids must be the fleet's, children
    declared groups, and no group may contain itself."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise FleetError(f"{where}: expected a list like [{{name: mg-prod, subscriptions: [<id>], children: [mg-a]}}]")
    out: dict[str, ManagementGroupSpec] = {}
    for i, r in enumerate(raw):
        w = f"{where}[{i}]"
        m = _check_keys(r, {"name", "subscriptions", "children"}, w)
        name = str(m.get("name") or "").strip()
        if not name:
            raise FleetError(f"{w}: every management group needs a name")
        if name.lower() in {k.lower() for k in out}:
            raise FleetError(f"{w}.name: management group {name!r} is listed twice")
        subs = m.get("subscriptions") or []
        kids = m.get("children") or []
        if not isinstance(subs, list) or not isinstance(kids, list):
            raise FleetError(f"{w}: subscriptions and children are lists")
        ids = [str(s).lower() for s in subs]
        for s in ids:
            if s not in subscription_ids:
                raise FleetError(f"{w}.subscriptions: {s!r} is not a subscription of this fleet")
        out[name] = ManagementGroupSpec(name, ids, [str(c) for c in kids])
    names = {k.lower() for k in out}
    for name, g in out.items():
        for c in g.children:
            if c.lower() not in names:
                raise FleetError(f"{where}: {name}.children: {c!r} is not a declared management group")
    for name in out:  # a group below itself would make its scope endless
        todo, seen = [c.lower() for c in out[name].children], set()
        by_low = {k.lower(): v for k, v in out.items()}
        while todo:
            c = todo.pop()
            if c == name.lower():
                raise FleetError(f"{where}: management group {name!r} contains itself")
            if c not in seen:
                seen.add(c)
                todo += [x.lower() for x in by_low[c].children]
    return out


def _number(value: Any, where: str, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FleetError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value) or value < low or (high is not None and value >= high):
        rng = f"from {low:g} up to (not including) {high:g}" if high is not None else f"of at least {low:g}"
        raise FleetError(f"{where}: expected a number {rng}, got {value!r}")
    return float(value)


_EVENT_KEYS = {"type", "vms", "at", "notice", "duration_seconds", "description", "source", "status"}


def parse_event(raw: Any, where: str, vm_names: set[str] | None = None) -> EventSpec:
    """One Scheduled Event rule: {type, vms, at, notice, duration_seconds, description, source,
    status}. `vm_names` (lower case): the fleet's VM names, each name in `vms` must be one."""
    e = _check_keys(raw, _EVENT_KEYS, where)
    canon = {t.lower(): t for t in EVENT_TYPES}
    etype = canon.get(str(e.get("type", "")).lower())
    if etype is None:
        raise FleetError(f"{where}.type: expected one of {', '.join(EVENT_TYPES)}, got {e.get('type')!r}")
    vms = e.get("vms")
    if isinstance(vms, str):
        vms = [vms]
    if not isinstance(vms, list) or not vms or not all(isinstance(v, str) and v for v in vms):
        raise FleetError(f"{where}.vms: expected a list of VM names, e.g. [web-01, web-02]")
    if vm_names is not None:
        for v in vms:
            if v.lower() not in vm_names:
                raise FleetError(f"{where}.vms: no VM named {v!r} in this fleet")
    at = parse_duration(e.get("at", 0), f"{where}.at")
    if at < 0:
        raise FleetError(f"{where}.at: expected a time from now (0s, 30s, 5m), got {e.get('at')!r}")
    status = str(e.get("status", "Scheduled"))
    if status not in ("Scheduled", "Started"):
        raise FleetError(f"{where}.status: expected Scheduled or Started (a hardware failure), got {status!r}")
    notice: float | None = None
    if status == "Scheduled":
        notice = _seconds(e.get("notice", MIN_NOTICE_SECONDS[etype]), f"{where}.notice", maximum=MAX_SPAN_SECONDS)
    elif "notice" in e:
        raise FleetError(f"{where}.notice: an event that is Started at once has no notice; leave one of them out")
    dur = e.get("duration_seconds", 5 if etype == "Freeze" else -1)
    if isinstance(dur, bool) or not isinstance(dur, int) or dur < -1:
        raise FleetError(f"{where}.duration_seconds: expected a whole number of seconds, -1 (unknown) or more, got {dur!r}")
    source = str(e.get("source", "Platform"))
    if source not in ("Platform", "User"):
        raise FleetError(f"{where}.source: expected Platform or User, got {source!r}")
    return EventSpec(type=etype, vms=[str(v) for v in vms], at=at, notice=notice, duration_seconds=dur,
                     description=str(e.get("description", EVENT_DESCRIPTIONS[etype])), source=source)


def parse_imds(raw: Any, where: str = "imds") -> ImdsSpec:
    i = _check_keys(raw or {}, {"first_call_seconds", "events_flow_seconds", "started_seconds",
                                "idle_off_seconds", "rate_per_second", "approval_start_seconds"}, where)
    spec = ImdsSpec()
    for key in ("first_call_seconds", "events_flow_seconds", "started_seconds", "idle_off_seconds",
                "approval_start_seconds"):
        if key in i:
            setattr(spec, key, _seconds(i[key], f"{where}.{key}", maximum=MAX_SPAN_SECONDS))
    if "rate_per_second" in i:
        spec.rate_per_second = _number(i["rate_per_second"], f"{where}.rate_per_second", low=0.001)
    return spec


def load_fleet(source: str | Path | dict[str, Any], now: datetime | None = None) -> Fleet:
    """Load a fleet from a YAML path, YAML text or an already-parsed mapping."""
    now = now or datetime.now(timezone.utc)
    if isinstance(source, dict):
        data = source
        origin = "fleet"
    else:
        path = Path(source)
        origin = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FleetError(f"cannot read fleet file {origin}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise FleetError(f"fleet file {origin} is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FleetError(f"{origin}: not valid YAML: {exc}") from exc
    data = _check_keys(data or {}, _TOP_KEYS, origin)
    defaults = _check_keys(data.get("defaults") or {}, {"location", "size", "os"}, "defaults")
    time_cfg = _check_keys(
        data.get("time") or {},
        {"lro_seconds", "activity_log_delay_seconds", "lro_retry_after", "token_lifetime_seconds", "jitter", "seed"},
        "time",
    )
    lro = dict(DEFAULT_LRO_SECONDS)
    lro_cfg = time_cfg.get("lro_seconds") or {}
    if not isinstance(lro_cfg, dict):
        raise FleetError(f"time.lro_seconds: expected a mapping of operation to seconds, got {lro_cfg!r}")
    for op, secs in lro_cfg.items():
        if op not in LRO_OPERATIONS:
            raise FleetError(f"time.lro_seconds: unknown operation {op!r}; known: {', '.join(LRO_OPERATIONS)}")
        lro[op] = _seconds(secs, f"time.lro_seconds.{op}")
    retry_after = time_cfg.get("lro_retry_after")
    if retry_after is not None:
        retry_after = _number(retry_after, "time.lro_retry_after")
        if retry_after <= 0:
            raise FleetError("time.lro_retry_after: expected a positive number of seconds (leave it out for no header)")
    jitter = _number(time_cfg.get("jitter", DEFAULT_JITTER), "time.jitter", high=1.0)
    seed = time_cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FleetError(f"time.seed: expected a whole number, got {seed!r}")
    platform = parse_platform(data.get("platform"))
    paging = _check_keys(data.get("paging") or {}, {"vms", "activity_log", "resources"}, "paging")
    page_sizes = {k: _whole(v, f"paging.{k}", high=MAX_PAGE_SIZE) for k, v in paging.items()}
    identity = _check_keys(
        data.get("identity") or {}, {"upn", "name", "object_id", "app_id"}, "identity"
    )
    subs: list[SubscriptionSpec] = []
    vms: list[VmSpec] = []
    avsets: list[AvailabilitySetSpec] = []
    raw_subs = data.get("subscriptions") or []
    if not isinstance(raw_subs, list) or not raw_subs:
        raise FleetError(f"{origin}: 'subscriptions' must list at least one subscription")
    seen_ids: set[str] = set()
    for si, rs in enumerate(raw_subs):
        w = f"subscriptions[{si}]"
        _check_keys(rs, {"id", "name", "resource_groups", "readable"}, w)
        readable = rs.get("readable", True)
        if not isinstance(readable, bool):
            raise FleetError(f"{w}.readable: expected true or false, got {readable!r}")
        sid = str(rs.get("id", "")).lower()
        try:
            uuid.UUID(sid)
        except ValueError as exc:
            raise FleetError(f"{w}.id: a subscription id is a GUID, got {rs.get('id')!r}") from exc
        if sid in seen_ids:
            raise FleetError(f"{w}.id: subscription {sid} is listed twice")
        seen_ids.add(sid)
        rgs: dict[str, str] = {}
        for gi, rg in enumerate(rs.get("resource_groups") or []):
            gw = f"{w}.resource_groups[{gi}]"
            _check_keys(rg, {"name", "location", "availability_sets", "vms"}, gw)
            if "name" not in rg:
                raise FleetError(f"{gw}: every resource group needs a name")
            rg_name = str(rg["name"])
            if rg_name.lower() in {k.lower() for k in rgs}:
                raise FleetError(f"{gw}.name: resource group {rg_name!r} is listed twice")
            location = str(rg.get("location", defaults.get("location", "westeurope")))
            rgs[rg_name] = location
            as_specs: dict[str, AvailabilitySetSpec] = {}
            for ai, a in enumerate(rg.get("availability_sets") or []):
                aw = f"{gw}.availability_sets[{ai}]"
                _check_keys(a, {"name", "update_domains", "fault_domains"}, aw)
                if "name" not in a:
                    raise FleetError(f"{aw}: every availability set needs a name")
                spec = AvailabilitySetSpec(
                    sid, rg_name, str(a["name"]), location,
                    _whole(a.get("update_domains", 5), f"{aw}.update_domains", high=20),
                    _whole(a.get("fault_domains", 2), f"{aw}.fault_domains", high=3),
                )
                if not (1 <= spec.update_domains <= 20 and 1 <= spec.fault_domains <= 3):
                    raise FleetError(f"{aw}: update_domains must be 1-20 and fault_domains 1-3")
                as_specs[spec.name] = spec
                avsets.append(spec)
            counters = {name: [0] for name in as_specs}
            names_seen: set[str] = set()
            for vi, v in enumerate(rg.get("vms") or []):
                for vm in _vm_entries(v, f"{gw}.vms[{vi}]", sid, rg_name, location, defaults, now, counters, as_specs):
                    if vm.name.lower() in names_seen:
                        raise FleetError(f"{gw}.vms[{vi}]: VM name {vm.name!r} is used twice in {rg_name}")
                    names_seen.add(vm.name.lower())
                    vms.append(vm)
        subs.append(SubscriptionSpec(sid, str(rs.get("name", sid)), rgs, readable))
    thr = data.get("throttling") or {}
    if not isinstance(thr, dict):
        raise FleetError("throttling: expected a mapping")
    raw_events = data.get("scheduled_events") or []
    if not isinstance(raw_events, list):
        raise FleetError("scheduled_events: expected a list of events, e.g. [{type: Reboot, vms: [web-01], at: 1m}]")
    counts: dict[str, int] = {}
    for v in vms:
        counts[v.name.lower()] = counts.get(v.name.lower(), 0) + 1
    events = [parse_event(r, f"scheduled_events[{i}]", set(counts)) for i, r in enumerate(raw_events)]
    for i, ev in enumerate(events):
        for name in ev.vms:
            if counts[name.lower()] > 1:
                raise FleetError(f"scheduled_events[{i}].vms: VM name {name!r} is used in several resource groups; "
                                 "Scheduled Events name VMs by name alone, so give it a unique name")
    return Fleet(
        tenant_id=str(data.get("tenant_id", "72f988bf-0000-0000-0000-000000000000")),
        subscriptions=subs, vms=vms, availability_sets=avsets, lro_seconds=lro,
        activity_log_delay_seconds=_seconds(
            time_cfg.get("activity_log_delay_seconds", DEFAULT_ACTIVITY_LOG_DELAY_SECONDS), "time.activity_log_delay_seconds"),
        lro_retry_after=retry_after,
        token_lifetime_seconds=_seconds(time_cfg.get("token_lifetime_seconds", 3600), "time.token_lifetime_seconds",
                                        maximum=MAX_TOKEN_SECONDS, positive=True),
        vm_page_size=page_sizes.get("vms", 200),
        activity_page_size=page_sizes.get("activity_log", 200),
        identity={str(k): str(v) for k, v in identity.items()},
        faults=parse_faults(data.get("faults")),
        throttling=ThrottleSpec(enabled=bool(thr.get("enabled", True)), overrides={k: v for k, v in thr.items() if k != "enabled"}),
        jitter=jitter, seed=seed, resource_page_size=page_sizes.get("resources", 1000), platform=platform,
        scheduled_events=events, imds=parse_imds(data.get("imds")),
        management_groups=parse_management_groups(data.get("management_groups"), {s.id for s in subs}),
        computeschedule=parse_schedule(data.get("computeschedule")),
    )
