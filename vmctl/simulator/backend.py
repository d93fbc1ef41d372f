"""Simulator state: subscriptions, resource groups, availability sets, VMs and their operations.

Power and maintenance are state machines driven by elapsed time: an operation ends when its
duration has passed, and that is visible to any read (some clients never poll the operation).
Durations (and Activity Log ingestion delays) are jittered per operation (per event) and divided
by the time scale. Compute's state refusals are synchronous 409s checked against the state the
VM is set to reach; a second operation on a busy VM preempts the running one (it ends Canceled,
OperationPreempted) unless the fleet's `platform.busy_vm` says refuse.

A user restart/redeploy of a VM whose IMDS is enabled waits for its Scheduled Event (imds.py):
the operation is accepted at once but its reboot starts only at approval or NotBefore.

Left out: VM create/update/delete, disks and NICs as writable resources, scale-set (VMSS) APIs,
regions other than the VM's own.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .activity import ActivityLog
from .exceptions import (
    AmbiguousVm,
    OperationNotAllowed,
    OperationNotFound,
    ResourceGroupNotFound,
    ResourceNotFound,
    SimError,
    SubscriptionNotFound,
)
from .fleet import AvailabilitySetSpec, Fleet, SubscriptionSpec, VmSpec, load_fleet
from .imds import ImdsState

if TYPE_CHECKING:
    from .faults import Faults
    from .schedule import ScheduleState
    from .throttle import Throttle

MAX_TIME_SCALE = 100000.0  # beyond this simulated durations round to nothing: a typo, not a wish
PREEMPTED = ("OperationPreempted", "The operation has been preempted by a more recent operation.")
RESTART_REFUSED = "The operation requires the VM to be running (or set to run)."

POWER_DISPLAY = {
    "running": "VM running", "starting": "VM starting", "stopping": "VM stopping",
    "stopped": "VM stopped", "deallocating": "VM deallocating", "deallocated": "VM deallocated",
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


@dataclass
class CallContext:
    """Who asked, and the request ids that the Activity Log records."""
    caller: str
    claims: dict[str, str]
    correlation_id: str
    client_request_id: str


@dataclass
class Operation:
    id: str
    vm: "Vm"
    kind: str
    started: float
    ends: float
    prev_power: str      # the power state shown when the operation began (may be transitional)
    target: str          # the power state the operation takes the VM to
    ctx: CallContext
    hibernate: bool = False
    fail: tuple[str, str] | None = None
    cancel: bool = False  # an injected fault: the operation ends Canceled (OperationPreempted)
    status: str = "InProgress"
    end_time: float | None = None
    impact_start: float = 0.0  # when the VM is really touched: later than `started` while a Scheduled Event holds it

    def status_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"startTime": iso(self.started), "status": self.status, "name": self.id}
        if self.end_time is not None:
            doc["endTime"] = iso(self.end_time)
        if self.status in ("Failed", "Canceled") and self.fail:
            doc["error"] = {"code": self.fail[0], "message": self.fail[1]}
        return doc


@dataclass
class Maintenance:
    """A VM's maintenance state (`maintenanceRedeployStatus`): loaded from the fleet, changed by
    performMaintenance."""
    allowed: bool                                          # isCustomerInitiatedMaintenanceAllowed
    self_service_window: tuple[datetime, datetime] | None  # preMaintenanceWindow{Start,End}Time
    scheduled_window: tuple[datetime, datetime] | None     # maintenanceWindow{Start,End}Time
    result: str                                            # lastOperationResultCode
    message: str                                           # lastOperationMessage (when not empty)


@dataclass
class Vm:
    spec: VmSpec
    id: str
    power: str
    hibernated: bool
    provisioning: str
    maint: Maintenance | None
    created: float
    prov_error: tuple[str, str] | None = None
    op: Operation | None = None
    power_changed: float = field(default_factory=time.time)
    # power changes no operation made (a Spot eviction), (when, power): Resource Graph replays them
    # with the operations, so they show as late as an operation's do
    power_events: list[tuple[float, str]] = field(default_factory=list)
    rev: int = 0  # bumped on every state change; keys the JSON text cache
    cache: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


_LRO_KINDS = ("powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy")
_TARGET = {"powerOff": "stopped", "deallocate": "deallocated", "start": "running", "restart": "running"}



def power_during(op: "Operation", t: float) -> str:
    """The power state a VM shows at time `t` while `op` runs (ARM reads now, Resource Graph replayed)."""
    if t < op.impact_start:  # held by its Scheduled Event: the VM still runs
        return op.prev_power
    if op.kind == "powerOff":
        return "stopping"
    if op.kind == "deallocate":
        return "deallocating"
    if op.kind == "start":
        return "starting"
    if op.kind == "restart" or op.target == "running":  # a reboot: stopping, then starting
        return "starting" if t >= (op.impact_start + op.ends) / 2 else "stopping"
    return op.prev_power  # redeploy / performMaintenance of a VM that is not running

class Backend:
    def __init__(
        self, source: str | Path | dict[str, Any] | Fleet, time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) \
                or not math.isfinite(time_scale) or not 0 < time_scale <= MAX_TIME_SCALE:
            raise ValueError(f"time scale must be a number above 0 and at most {MAX_TIME_SCALE:g}, not {time_scale!r}")
        self.source = source
        self.time_scale = time_scale
        self.clock = clock
        self.lock = threading.RLock()
        self.activity = ActivityLog()
        # set by the server (Simulator): ComputeSchedule starts VM operations through the same
        # Compute buckets and fault rules as an ARM request (schedule.py)
        self.throttle: Throttle | None = None
        self.faults: Faults | None = None
        self.fleet: Fleet = source if isinstance(source, Fleet) else load_fleet(source)
        self._build()

    # ----------------------------------------------------------------- state
    def _build(self) -> None:
        fleet = self.fleet
        now = self.clock()
        self.subs: dict[str, SubscriptionSpec] = {s.id: s for s in fleet.subscriptions}
        self.rgs: dict[tuple[str, str], tuple[str, str]] = {}
        for s in fleet.subscriptions:
            for rg, loc in s.resource_groups.items():
                self.rgs[(s.id, rg.lower())] = (rg, loc)
        self.avsets: dict[tuple[str, str, str], AvailabilitySetSpec] = {
            (a.subscription_id, a.resource_group.lower(), a.name.lower()): a for a in fleet.availability_sets
        }
        self.vms: dict[tuple[str, str, str], Vm] = {}
        self.vms_created = now - 86400 * 30
        self.by_sub: dict[str, list[Vm]] = {s.id: [] for s in fleet.subscriptions}
        for spec in fleet.vms:
            vm_id = (f"/subscriptions/{spec.subscription_id}/resourceGroups/{spec.resource_group}"
                     f"/providers/Microsoft.Compute/virtualMachines/{spec.name}")
            maint = None
            if spec.maintenance is not None:
                m = spec.maintenance
                maint = Maintenance(m.allowed, m.self_service_window, m.scheduled_window, m.last_result, m.last_message)
            vm = Vm(spec, vm_id, spec.power_state, spec.hibernated,
                    "Failed" if spec.provisioning_state.lower() == "failed" else "Succeeded",
                    maint, created=self.vms_created, power_changed=now - 86400)
            if vm.provisioning == "Failed":
                vm.prov_error = ("ProvisioningFailed", "The last operation on this VM failed.")
            self.vms[(spec.subscription_id, spec.resource_group.lower(), spec.name.lower())] = vm
            self.by_sub[spec.subscription_id].append(vm)
        self.ops: dict[str, Operation] = {}
        self._due: list[tuple[float, int, Operation]] = []
        self._seq = itertools.count()
        self.rng = random.Random(fleet.seed)  # durations and delays: reproducible with time.seed
        self.activity.clear()
        self.imds = ImdsState(self)
        self.imds.load(fleet.scheduled_events, now)
        from .schedule import ScheduleState  # schedule.py builds on this module

        self.schedule: ScheduleState = ScheduleState(self)

    def reset(self) -> None:
        """Back to the fleet as loaded; relative times are resolved again from now."""
        with self.lock:
            if not isinstance(self.source, Fleet):
                self.fleet = load_fleet(self.source)
            self._build()

    def now(self) -> float:
        return self.clock()

    def jitter(self) -> float:
        """A random factor in [1 - jitter, 1 + jitter] (1 when the fleet sets jitter 0)."""
        j = self.fleet.jitter
        return self.rng.uniform(1.0 - j, 1.0 + j) if j else 1.0

    def settle(self, now: float) -> None:
        """Complete every operation whose time has come (called on every request). ComputeSchedule's
        operations start VM operations at their own times, which may end before `now`: a few passes."""
        for _ in range(64):
            due = self._due
            while due and due[0][0] <= now:
                _, _, op = heapq.heappop(due)
                if op.status == "InProgress" and op.ends <= now:  # a preempted (or re-timed) one has ended
                    self._complete(op)
            self.imds.settle(now)
            if not self.schedule.settle(now):
                return

    def release(self, op: Operation, now: float, seconds: float) -> None:
        """A held operation's Scheduled Event was approved: its reboot starts at `now` (the event's start)."""
        op.impact_start, op.ends = now, now + seconds
        op.vm.rev += 1
        heapq.heappush(self._due, (op.ends, next(self._seq), op))

    def evict(self, vm: Vm, when: float) -> None:
        """A Preempt/Terminate event started: the VM is deallocated (Spot eviction policy Deallocate)."""
        if vm.op is None and vm.power != "deallocated":
            vm.power, vm.power_changed = "deallocated", when
            vm.power_events.append((when, "deallocated"))
            vm.rev += 1

    # ----------------------------------------------------------------- lookups
    def subscription(self, sub: str) -> SubscriptionSpec:
        s = self.subs.get(sub.lower())
        if s is None:
            raise SubscriptionNotFound(sub)
        return s

    def resource_group(self, sub: str, rg: str) -> tuple[str, str]:
        self.subscription(sub)
        found = self.rgs.get((sub.lower(), rg.lower()))
        if found is None:
            raise ResourceGroupNotFound(rg)
        return found

    def vm(self, sub: str, rg: str, name: str) -> Vm:
        self.resource_group(sub, rg)
        vm = self.vms.get((sub.lower(), rg.lower(), name.lower()))
        if vm is None:
            raise ResourceNotFound(
                f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' "
                "was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return vm

    def list_vms(self, sub: str, rg: str | None = None) -> list[Vm]:
        self.subscription(sub)
        vms = self.by_sub[sub.lower()]
        if rg is None:
            return vms
        self.resource_group(sub, rg)
        low = rg.lower()
        return [v for v in vms if v.spec.resource_group.lower() == low]

    def find_vm(self, name: str, rg: str | None = None, sub: str | None = None) -> Vm:
        """A VM by name, the group and subscription optional when the name alone is unique."""
        if sub is not None and rg is not None:
            return self.vm(sub, rg, name)
        subs = [self.subscription(sub).id] if sub is not None else list(self.subs)
        if rg is not None:
            for s in subs:
                if (s, rg.lower()) in self.rgs:
                    return self.vm(s, rg, name)
            raise ResourceGroupNotFound(rg)
        found = [v for (s, _, n), v in self.vms.items() if s in subs and n == name.lower()]
        if not found:
            raise ResourceNotFound(f"The Resource 'Microsoft.Compute/virtualMachines/{name}' was not found.")
        if len(found) > 1:
            where = ", ".join(f"{v.spec.resource_group} ({v.spec.subscription_id})" for v in found)
            raise AmbiguousVm(f"VM name '{name}' is used in several resource groups: {where}; "
                              "give resource_group (and subscription).")
        return found[0]

    def availability_set(self, sub: str, rg: str, name: str) -> AvailabilitySetSpec:
        self.resource_group(sub, rg)
        a = self.avsets.get((sub.lower(), rg.lower(), name.lower()))
        if a is None:
            raise ResourceNotFound(
                f"The Resource 'Microsoft.Compute/availabilitySets/{name}' under resource group '{rg}' was not found.",
            )
        return a

    def operation(self, op_id: str) -> Operation:
        op = self.ops.get(op_id)
        if op is None:
            raise OperationNotFound()
        return op

    # ----------------------------------------------------------------- operations
    def _refuse(self, vm: Vm, kind: str, ctx: CallContext, err: SimError, at: float | None = None) -> SimError:
        """A synchronous refusal by Compute; like Azure, it is recorded in the Activity Log."""
        now = self.now() if at is None else at
        op_id = str(uuid.uuid4())
        for st in ("Started", "Failed"):
            self._emit(vm, kind, st, ctx, op_id, now, http_status=err.status if st == "Failed" else None,
                       error={"code": err.code, "message": err.message} if st == "Failed" else None)
        return err

    def begin(
        self, vm: Vm, kind: str, ctx: CallContext, *, hibernate: bool = False,
        fail: tuple[str, str] | None = None, extra_seconds: float = 0.0, cancel: bool = False,
        at: float | None = None,
    ) -> Operation:
        """Start an operation, or raise the synchronous refusal Compute would answer.

        State refusals are checked against the state the VM is set to reach: the running
        operation's target ("set to run", "marked to be deallocated"), else its power state.
        Then a busy VM either preempts its running operation or refuses (platform.busy_vm).
        `at`: when it starts (ComputeSchedule starts its operations at their own times), else now.
        """
        assert kind in _LRO_KINDS
        now = self.now() if at is None else at
        name = vm.name
        running = vm.op
        state = running.target if running is not None else vm.power
        if kind == "restart" and state != "running":
            raise self._refuse(vm, kind, ctx, OperationNotAllowed(RESTART_REFUSED), now)
        if kind == "powerOff" and state == "deallocated":
            raise self._refuse(
                vm, kind, ctx, OperationNotAllowed(
                    f"Operation 'powerOff' is not allowed on VM '{name}' since the VM is either deallocated "
                    "or marked to be deallocated."), now,
            )
        if kind == "deallocate" and vm.spec.ephemeral_os_disk:
            raise self._refuse(
                vm, kind, ctx, OperationNotAllowed(
                    f"Operation 'deallocate' is not supported for VM '{name}' because it uses an ephemeral "
                    "OS disk. Use powerOff, or delete and recreate the VM."), now,
            )
        if kind == "deallocate" and hibernate:
            if not vm.spec.hibernation_enabled:
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"Hibernation is not enabled on VM '{name}'. Enable "
                        "additionalCapabilities.hibernationEnabled before deallocating with hibernate=true."), now,
                )
            shown = self._power_now(vm, now)
            if shown != "running":
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"VM '{name}' can be hibernated only while it is running; it is {shown}."), now,
                )
        if kind == "performMaintenance":
            m = vm.maint
            window = m.self_service_window if m else None
            if not m or not m.allowed:
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"Operation 'performMaintenance' is not allowed on VM '{name}' since the "
                        "Subscription of this VM is not eligible."), now,
                )
            if window is None or not (window[0].timestamp() <= now <= window[1].timestamp()):
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"Operation 'performMaintenance' is not allowed on VM '{name}' since the "
                        "self-service maintenance window is not open."), now,
                )
            if state == "deallocated":
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"Operation 'performMaintenance' is not allowed on VM '{name}' since it is "
                        "deallocated; it will be placed on an updated host when it starts."), now,
                )
        shown = vm.power
        if running is not None:
            if self.fleet.platform.busy_mode(kind, running.kind) == "refuse":
                raise self._refuse(
                    vm, kind, ctx, OperationNotAllowed(
                        f"Operation '{kind}' is not allowed on VM '{name}' since the VM is busy with "
                        f"operation '{running.kind}'."), now,
                )
            shown = self._power_now(vm, now)  # the new operation starts from the transitional state
            self._preempt(running, now)
        seconds = (self.fleet.lro_seconds[kind] * self.jitter() + extra_seconds) / self.time_scale
        op = Operation(
            id=str(uuid.uuid4()), vm=vm, kind=kind, started=now, ends=now + seconds,
            prev_power=shown, target=_TARGET.get(kind, state), ctx=ctx, hibernate=hibernate,
            fail=PREEMPTED if cancel else fail, cancel=cancel, impact_start=now,
        )
        held = self.imds.hold(vm, op, now)
        if held is not None:  # the guest listens: the reboot waits for approval or NotBefore
            op.impact_start, op.ends = held, held + seconds
        self.ops[op.id] = op
        vm.op = op
        vm.rev += 1
        heapq.heappush(self._due, (op.ends, next(self._seq), op))
        self._emit(vm, kind, "Started", ctx, op.id, now)
        self._emit(vm, kind, "Accepted", ctx, op.id, now + 0.001)  # EndRequest follows BeginRequest
        return op

    def _preempt(self, op: Operation, now: float) -> None:
        """A newer operation preempts `op`: it ends Canceled now and never applies its end state."""
        vm = op.vm
        op.status, op.end_time, op.fail = "Canceled", now, PREEMPTED
        vm.op = None
        self.imds.operation_ended(op, now, cancelled=True)
        vm.rev += 1
        self._emit(vm, op.kind, "Failed", op.ctx, op.id, now,
                   error={"code": PREEMPTED[0], "message": PREEMPTED[1]}, lro_status="Canceled")

    def _complete(self, op: Operation) -> None:
        vm = op.vm
        op.end_time = op.ends
        vm.op = None
        vm.rev += 1
        if op.cancel:
            op.status = "Canceled"  # power and provisioning state stay as they were
            self.imds.operation_ended(op, op.ends, cancelled=True)
            self._emit(vm, op.kind, "Failed", op.ctx, op.id, op.ends,
                       error={"code": PREEMPTED[0], "message": PREEMPTED[1]}, lro_status="Canceled")
            return
        if op.fail:
            op.status = "Failed"
            vm.provisioning = "Failed"
            vm.prov_error = op.fail
            if op.kind == "performMaintenance" and vm.maint is not None:
                vm.maint.result = "RetryLater" if op.fail[0] == "RetryLater" else "MaintenanceAborted"
                vm.maint.message = op.fail[1]
            self._emit(vm, op.kind, "Failed", op.ctx, op.id, op.ends, http_status=500,
                       error={"code": op.fail[0], "message": op.fail[1]})
            return
        op.status = "Succeeded"
        vm.provisioning, vm.prov_error = "Succeeded", None
        before = vm.power
        vm.power = op.target
        if op.kind == "deallocate":
            vm.hibernated = op.hibernate
        elif op.target == "running":
            vm.hibernated = False
        if op.kind == "performMaintenance" and vm.maint is not None:
            vm.maint.allowed = False
            vm.maint.result = "MaintenanceCompleted"
            vm.maint.message = "Maintenance completed successfully."
        if vm.power != before:
            vm.power_changed = op.ends
        self._emit(vm, op.kind, "Succeeded", op.ctx, op.id, op.ends)

    def _emit(
        self, vm: Vm, kind: str, status: str, ctx: CallContext, op_id: str, when: float,
        http_status: int | None = None, error: dict[str, str] | None = None, lro_status: str = "Failed",
    ) -> None:
        delay = self.fleet.activity_log_delay_seconds * self.jitter() / self.time_scale  # per event
        self.activity.emit(
            now=when, delay=delay, lro_status=lro_status, status=status,
            operation=kind, resource_id=vm.id, subscription_id=vm.spec.subscription_id,
            tenant_id=self.fleet.tenant_id, resource_group=vm.spec.resource_group,
            correlation_id=ctx.correlation_id, operation_id=op_id, caller=ctx.caller, claims=ctx.claims,
            client_request_id=ctx.client_request_id, http_status=http_status, error=error,
        )

    # ----------------------------------------------------------------- JSON
    def visible_op(self, vm: Vm, now: float) -> Operation | None:
        """The VM's running operation as reads show it: only `platform.op_visible_after_seconds`
        after it was accepted (0 by default: the moment Compute answers 202)."""
        op = vm.op
        if op is None or now < op.started + self.fleet.platform.op_visible_after_seconds / self.time_scale:
            return None
        return op

    def _power_now(self, vm: Vm, now: float) -> str:
        op = self.visible_op(vm, now)
        if op is None:
            return vm.power if vm.op is None else vm.op.prev_power
        return power_during(op, now)

    def statuses(self, vm: Vm, now: float) -> list[dict[str, Any]]:
        if self.visible_op(vm, now) is not None:
            prov: dict[str, Any] = {"code": "ProvisioningState/updating", "level": "Info", "displayStatus": "Updating"}
        elif vm.provisioning == "Failed":
            code, msg = vm.prov_error or ("Unknown", "")
            prov = {"code": f"ProvisioningState/failed/{code}", "level": "Error",
                    "displayStatus": "Provisioning failed", "message": msg, "time": iso(vm.power_changed)}
        else:
            prov = {"code": "ProvisioningState/succeeded", "level": "Info",
                    "displayStatus": "Provisioning succeeded", "time": iso(vm.power_changed)}
        power = self._power_now(vm, now)
        out = [prov, {"code": f"PowerState/{power}", "level": "Info", "displayStatus": POWER_DISPLAY[power]}]
        if vm.hibernated and power == "deallocated":
            out.append({"code": "HibernationState/Hibernated", "level": "Info", "displayStatus": "VM hibernated"})
        return out

    def maintenance_json(self, vm: Vm) -> dict[str, Any] | None:
        m = vm.maint
        if m is None:
            return None
        out: dict[str, Any] = {"isCustomerInitiatedMaintenanceAllowed": bool(m.allowed)}
        if m.self_service_window:
            out["preMaintenanceWindowStartTime"] = m.self_service_window[0].isoformat()
            out["preMaintenanceWindowEndTime"] = m.self_service_window[1].isoformat()
        if m.scheduled_window:
            out["maintenanceWindowStartTime"] = m.scheduled_window[0].isoformat()
            out["maintenanceWindowEndTime"] = m.scheduled_window[1].isoformat()
        out["lastOperationResultCode"] = m.result
        if m.message:
            out["lastOperationMessage"] = m.message
        return out

    def instance_view(self, vm: Vm, now: float, maintenance: bool = True) -> dict[str, Any]:
        spec = vm.spec
        view: dict[str, Any] = {}
        if spec.update_domain is not None:
            view["platformUpdateDomain"] = spec.update_domain
            view["platformFaultDomain"] = spec.fault_domain
        view["computerName"] = spec.name
        view["osName"] = "ubuntu" if spec.os_type == "Linux" else "Windows Server 2022 Datacenter"
        view["osVersion"] = "22.04" if spec.os_type == "Linux" else "10.0.20348"
        view["hyperVGeneration"] = "V2"
        power = self._power_now(vm, now)
        if power == "running":
            view["vmAgent"] = {
                "vmAgentVersion": "2.13.1.1",
                "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                              "message": "Guest Agent is running", "time": iso(vm.power_changed)}],
                "extensionHandlers": [
                    {"type": f"Microsoft.Azure.Extensions.{e}", "typeHandlerVersion": "1.0",
                     "status": {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready"}}
                    for e in spec.extensions
                ],
            }
        maint = self.maintenance_json(vm) if maintenance else None
        if maint is not None:
            view["maintenanceRedeployStatus"] = maint
        view["disks"] = [{"name": f"{spec.name}_OsDisk_1", "statuses": [
            {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded",
             "time": iso(vm.created)}]}]
        if spec.extensions:
            view["extensions"] = [
                {"name": e, "type": f"Microsoft.Azure.Extensions.{e}", "typeHandlerVersion": "1.0",
                 "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info",
                               "displayStatus": "Provisioning succeeded"}]}
                for e in spec.extensions
            ]
        view["statuses"] = self.statuses(vm, now)
        return view

    def vm_json(self, vm: Vm, now: float, instance_view: bool = False, maintenance: bool = True) -> dict[str, Any]:
        spec = vm.spec
        sub, rg = spec.subscription_id, spec.resource_group
        os_disk: dict[str, Any] = {
            "osType": spec.os_type, "name": f"{spec.name}_OsDisk_1", "createOption": "FromImage",
            "caching": "ReadOnly" if spec.ephemeral_os_disk else "ReadWrite",
            "managedDisk": {
                "storageAccountType": "Standard_LRS" if spec.ephemeral_os_disk else "Premium_LRS",
                "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{spec.name}_OsDisk_1",
            },
            "deleteOption": "Delete" if spec.ephemeral_os_disk else "Detach",
            "diskSizeGB": 30,
        }
        if spec.ephemeral_os_disk:
            os_disk["diffDiskSettings"] = {"option": "Local", "placement": spec.ephemeral_os_disk}
        props: dict[str, Any] = {
            "vmId": spec.vm_id,
            "hardwareProfile": {"vmSize": spec.size},
            "storageProfile": {
                "imageReference": (
                    {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "latest"}
                    if spec.os_type == "Linux" else
                    {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition", "version": "latest"}
                ),
                "osDisk": os_disk,
                "dataDisks": [],
            },
            "osProfile": {"computerName": spec.name, "adminUsername": "azureuser", "secrets": [],
                          "allowExtensionOperations": True},
            "networkProfile": {"networkInterfaces": [{
                "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{spec.name}-nic",
                "properties": {"primary": True}}]},
            "provisioningState": "Updating" if self.visible_op(vm, now) is not None else vm.provisioning,
            "timeCreated": iso(vm.created),
        }
        if spec.availability_set:
            props["availabilitySet"] = {
                "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/availabilitySets/{spec.availability_set.upper()}"
            }
        if spec.scale_set:
            props["virtualMachineScaleSet"] = {
                "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{spec.scale_set}"
            }
            props["platformFaultDomain"] = 0
        if spec.hibernation_enabled:
            props["additionalCapabilities"] = {"hibernationEnabled": True}
        if spec.priority != "Regular":
            props["priority"] = spec.priority
            props["evictionPolicy"] = "Deallocate"
            props["billingProfile"] = {"maxPrice": -1}
        if instance_view and spec.status_in_list:
            props["instanceView"] = self.instance_view(vm, now, maintenance)
        out: dict[str, Any] = {
            "name": spec.name, "id": vm.id, "type": "Microsoft.Compute/virtualMachines",
            "location": spec.location, "tags": spec.tags,
        }
        if spec.zones:
            out["zones"] = spec.zones
        out["properties"] = props
        return out

    def status_item(self, vm: Vm, now: float) -> dict[str, Any]:
        """One item of `virtualMachines?statusOnly=true`.

        Sparse (the default) is the real capture's key set: id, name, type, location and
        properties {vmId, provisioningState, hardwareProfile: {}, instanceView {platformFaultDomain
        (when the VM has one), statuses}}. `platform.status_only_items: full` gives the full model
        plus the full instance view. maintenanceRedeployStatus only with
        `platform.maintenance_in_status_list: true`; a VM with `status_in_list: false` has no
        instanceView (Azure could not read its status).
        """
        plat = self.fleet.platform
        maint = plat.maintenance_in_status_list
        if plat.status_only_items == "full":
            return self.vm_json(vm, now, instance_view=True, maintenance=maint)
        spec = vm.spec
        props: dict[str, Any] = {
            "vmId": spec.vm_id,
            "provisioningState": "Updating" if self.visible_op(vm, now) is not None else vm.provisioning,
            "hardwareProfile": {},
        }
        if spec.status_in_list:
            view: dict[str, Any] = {}
            if spec.fault_domain is not None:
                view["platformFaultDomain"] = spec.fault_domain
            m = self.maintenance_json(vm) if maint else None
            if m is not None:
                view["maintenanceRedeployStatus"] = m
            view["statuses"] = self.statuses(vm, now)
            props["instanceView"] = view
        return {"id": vm.id, "name": spec.name, "type": "Microsoft.Compute/virtualMachines",
                "location": spec.location, "properties": props}

    def vm_text(self, vm: Vm, now: float, mode: str) -> str:
        """The VM's JSON text as a list item: mode "plain" (the model), "expand" (model plus
        instance view) or "status" (a statusOnly item). Cached while no operation runs (then it
        does not depend on time), so list pages of thousands of VMs are cheap to serve."""
        hit = vm.cache.get(mode) if vm.op is None else None
        if hit is not None and hit[0] == vm.rev:
            return hit[1]
        doc = self.status_item(vm, now) if mode == "status" else self.vm_json(vm, now, mode == "expand")
        text = json.dumps(doc, separators=(",", ":"))
        if vm.op is None:
            vm.cache[mode] = (vm.rev, text)
        return text

    def generic_resources(self, sub: str, rg: str | None = None) -> list[dict[str, Any]]:
        """What `GET .../resources` lists (GenericResource items): for each resource group, its
        availability sets, its VMs and each VM's NIC ({vm}-nic)."""
        s = self.subscription(sub)
        groups = [self.resource_group(sub, rg)[0]] if rg is not None else list(s.resource_groups)
        out: list[dict[str, Any]] = []
        for group in groups:
            low = group.lower()
            for a in self.fleet.availability_sets:
                if a.subscription_id == s.id and a.resource_group.lower() == low:
                    out.append({
                        "id": f"/subscriptions/{s.id}/resourceGroups/{a.resource_group}/providers/Microsoft.Compute/availabilitySets/{a.name}",
                        "name": a.name, "type": "Microsoft.Compute/availabilitySets",
                        "sku": {"name": "Aligned"}, "location": a.location, "tags": {},
                        "_rg": a.resource_group, "_created": self.vms_created,
                    })
            vms = [v for v in self.by_sub[s.id] if v.spec.resource_group.lower() == low]
            for v in vms:
                item: dict[str, Any] = {"id": v.id, "name": v.spec.name, "type": "Microsoft.Compute/virtualMachines",
                                        "location": v.spec.location, "tags": v.spec.tags}
                if v.spec.zones:
                    item["zones"] = v.spec.zones
                item.update(_rg=v.spec.resource_group, _created=v.created, _vm=v)
                out.append(item)
            for v in vms:
                out.append({
                    "id": f"/subscriptions/{s.id}/resourceGroups/{v.spec.resource_group}/providers/Microsoft.Network/networkInterfaces/{v.spec.name}-nic",
                    "name": f"{v.spec.name}-nic", "type": "Microsoft.Network/networkInterfaces",
                    "location": v.spec.location, "tags": {}, "_rg": v.spec.resource_group, "_created": v.created,
                })
        return out

    def availability_set_json(self, a: AvailabilitySetSpec) -> dict[str, Any]:
        members = [
            {"id": v.id.upper()} for v in self.by_sub[a.subscription_id]
            if v.spec.availability_set == a.name and v.spec.resource_group == a.resource_group
        ]
        return {
            "id": f"/subscriptions/{a.subscription_id}/resourceGroups/{a.resource_group}/providers/Microsoft.Compute/availabilitySets/{a.name}",
            "name": a.name, "type": "Microsoft.Compute/availabilitySets", "location": a.location,
            "sku": {"name": "Aligned"}, "tags": {},
            "properties": {"platformUpdateDomainCount": a.update_domains,
                           "platformFaultDomainCount": a.fault_domains, "virtualMachines": members},
        }
