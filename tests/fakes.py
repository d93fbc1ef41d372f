"""An in-memory FleetClient with scripted answers, for unit tests of the executor (no HTTP, no sleeps).

    fleet = FakeFleet([vm("a"), vm("b")])
    fleet.enqueue("a", "powerOff", Throttled(0.001), Accept(polls=["InProgress", "Succeeded"]))
    fleet.enqueue("b", "powerOff", Lost(landed=True, busy_reads=2))

Each `begin_action` on (VM, action) takes the next scripted answer (a zero-argument callable is
called first, for a side effect at send time); with none left it answers `Accept()` (202, one
poll: Succeeded). An accepted operation's polls answer its `polls` script in
order, the last one repeating; a poll answer is a status string, an OperationStatus, or an
exception instance (raised). The VM's state follows the operation: busy (transitional power,
provisioning Updating) once it landed, at the target when it succeeded, back where it was with
provisioning Failed / Succeeded when it failed / was canceled. `busy_reads=N` lets an operation
finish by itself after N reads of the VM (instance view or status listing) saw it busy. `instance_view`
and `list_statuses` read that state; `fail_views` scripts instance-view errors. Every call is
counted in `calls`; every begin_action is recorded in `begins`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from vmctl.cloud import Accepted, ActionError, Event, InstanceViewJson, OperationStatus, RetryableError, ThrottledError
from vmctl.models import Vm, VmStatus

SUB = "00000000-0000-0000-0000-0000000000f1"
RG = "rg-fake"
BUSY_POWER = {"powerOff": "stopping", "deallocate": "deallocating", "start": "starting", "restart": "starting",
              "performMaintenance": "stopping"}
TARGET_POWER = {"powerOff": "stopped", "deallocate": "deallocated", "start": "running", "restart": "running",
                "performMaintenance": "running"}


def make_vm(name: str, power: str = "running", *, sub: str = SUB, rg: str = RG, provisioning: str = "Succeeded",
            **kw: Any) -> Vm:
    return Vm(subscription_id=sub, resource_group=rg, name=name,
              id=f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
              location="westeurope", power_state=power, provisioning_state=provisioning, **kw)


# ------------------------------------------------------------------ scripted begin_action answers
@dataclass(frozen=True)
class Accept:
    """202 with a status URL (or 200, finished at once, when `sync`). Polls answer `polls` in order."""
    polls: tuple[Any, ...] = ("Succeeded",)
    retry_after: float | None = None
    busy_reads: int | None = None   # the operation completes by itself after this many busy instance views
    sync: bool = False


@dataclass(frozen=True)
class Lost:
    """The reply is lost: RetryableError raised. `landed`: the operation runs on the VM all the same."""
    landed: bool
    busy_reads: int | None = 1
    message: str = "connection aborted: reply lost"
    retry_after: float | None = 0.001


def Throttled(retry_after: float = 0.001) -> ThrottledError:  # noqa: N802 - reads like the answer it is
    return ThrottledError(retry_after, f"429 Too Many Requests (retry after {retry_after} s)")


def Refused(code: str = "OperationNotAllowed", message: str = "the VM's state does not allow it") -> ActionError:  # noqa: N802
    return ActionError(code, message, 409)


def ServerError(message: str = "500 Internal Server Error", retry_after: float | None = 0.001) -> RetryableError:  # noqa: N802
    return RetryableError(message, retry_after)


# ------------------------------------------------------------------ state
@dataclass
class FakeOp:
    vm: str
    action: str
    url: str | None
    polls: list[Any]
    busy_reads: int | None
    before: str                      # the VM's power before the operation
    status: str = "InProgress"
    busy_seen: int = 0


@dataclass
class VmState:
    vm: Vm
    power: str
    provisioning: str
    op: FakeOp | None = None
    views: list[Any] = field(default_factory=list)   # scripted instance_view answers (exceptions or VmStatus)


class FakeFleet:
    def __init__(self, vms: list[Vm]) -> None:
        self._lock = threading.RLock()
        self.vms = {v.name: VmState(v, v.power_state, v.provisioning_state or "Succeeded") for v in vms}
        self._answers: dict[tuple[str, str], list[Any]] = {}
        self.ops: dict[str, FakeOp] = {}
        self.calls: Counter[str] = Counter()
        self.begins: list[tuple[str, str, str]] = []   # (vm name, action, correlation id)
        self.refreshes = 0
        self.list_errors: list[Exception] = []         # scripted list_statuses failures, in order

    # -------------------------------------------------------------- scripting
    def enqueue(self, vm_name: str, action: str, *answers: Any) -> FakeFleet:
        with self._lock:
            self._answers.setdefault((vm_name, action), []).extend(answers)
        return self

    def fail_views(self, vm_name: str, *answers: Any) -> FakeFleet:
        """Script instance_view answers (exceptions raised, VmStatus returned); the last one repeats."""
        with self._lock:
            self.vms[vm_name].views.extend(answers)
        return self

    def set_state(self, vm_name: str, power: str, provisioning: str = "Succeeded") -> None:
        with self._lock:
            st = self.vms[vm_name]
            st.power, st.provisioning = power, provisioning

    def state(self, vm_name: str) -> tuple[str, str]:
        with self._lock:
            st = self.vms[vm_name]
            return st.power, st.provisioning

    def begin_count(self, vm_name: str | None = None) -> int:
        with self._lock:
            return sum(1 for n, _, _ in self.begins if vm_name is None or n == vm_name)

    # -------------------------------------------------------------- the operation's life
    def _land(self, st: VmState, action: str, polls: tuple[Any, ...], busy_reads: int | None, with_url: bool) -> FakeOp:
        url = f"https://fake.invalid/operations/{len(self.ops) + 1}" if with_url else None
        op = FakeOp(st.vm.name, action, url, list(polls), busy_reads, st.power)
        self.ops[url or f"lost-{len(self.ops) + 1}"] = op
        st.op = op
        st.power, st.provisioning = BUSY_POWER[action], "Updating"
        return op

    def _end(self, op: FakeOp, status: str) -> None:
        st = self.vms[op.vm]
        op.status = status
        if st.op is op:
            st.op = None
        if status == "Succeeded":
            st.power, st.provisioning = TARGET_POWER[op.action], "Succeeded"
        elif status == "Failed":
            st.power, st.provisioning = op.before, "Failed"
        else:  # Canceled: preempted by another request; the VM settles where that one left it
            st.power, st.provisioning = op.before, "Succeeded"

    def _look(self, st: VmState) -> None:
        """A read of the VM's state (instance view or listing): an operation with `busy_reads`
        completes once that many reads have seen it busy."""
        op = st.op
        if op is not None and op.busy_reads is not None:
            if op.busy_seen >= op.busy_reads:
                self._end(op, "Succeeded")
            else:
                op.busy_seen += 1

    def _status(self, st: VmState) -> VmStatus:
        return VmStatus(power_state=st.power, provisioning_state=st.provisioning)

    # -------------------------------------------------------------- FleetClient
    def subscription_name(self, subscription_id: str) -> str:
        self.calls["subscription_name"] += 1
        return "fake-subscription"

    def list_vms(self, subscription_id: str, subscription_name: str, before_page: Callable[[], object] | None = None,
                 on_headers: Callable[[dict[str, str]], None] | None = None) -> list[Vm]:
        with self._lock:
            self.calls["list_vms"] += 1
            return [replace(s.vm, power_state=s.power, provisioning_state=s.provisioning)
                    for s in self.vms.values() if s.vm.subscription_id == subscription_id]

    def list_statuses(self, subscription_id: str, before_page: Callable[[], object] | None = None,
                      on_headers: Callable[[dict[str, str]], None] | None = None) -> dict[str, VmStatus]:
        with self._lock:
            self.calls["list_statuses"] += 1
            if self.list_errors:
                raise self.list_errors.pop(0)
            mine = [s for s in self.vms.values() if s.vm.subscription_id == subscription_id]
            for s in mine:
                self._look(s)
            return {s.vm.key: self._status(s) for s in mine}

    def instance_view(self, subscription_id: str, resource_group: str, name: str,
                      on_headers: Any = None, quick: bool = False) -> VmStatus:
        with self._lock:
            self.calls["instance_view"] += 1
            st = self.vms[name]
            if st.views:
                answer = st.views[0] if len(st.views) == 1 else st.views.pop(0)
                if isinstance(answer, BaseException):
                    raise answer
                return answer
            self._look(st)
            if on_headers:
                on_headers({})
            return self._status(st)

    def resource_group_exists(self, subscription_id: str, resource_group: str) -> bool:
        self.calls["resource_group_exists"] += 1
        return any(s.vm.resource_group.lower() == resource_group.lower() for s in self.vms.values())

    def get_vm(self, subscription_id: str, resource_group: str, name: str,
               subscription_name: str = "") -> tuple[Vm, InstanceViewJson]:
        with self._lock:
            self.calls["get_vm"] += 1
            st = self.vms[name]
            return replace(st.vm, power_state=st.power, provisioning_state=st.provisioning), {}

    def request_count(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def refresh_credential(self) -> None:
        with self._lock:
            self.calls["refresh_credential"] += 1
            self.refreshes += 1

    def begin_action(self, vm: Vm, action: str, *, correlation_id: str, hibernate: bool = False,
                     skip_shutdown: bool = False, on_headers: Any = None) -> Accepted:
        with self._lock:
            self.calls["begin_action"] += 1
            self.begins.append((vm.name, action, correlation_id))
            queue = self._answers.get((vm.name, action), [])
            answer = queue.pop(0) if queue else Accept()
            if callable(answer) and not isinstance(answer, (Accept, Lost, BaseException)):
                answer = answer()   # a side effect at send time (e.g. Ctrl-C), then its answer
            st = self.vms[vm.name]
            if isinstance(answer, Lost):
                if answer.landed:
                    self._land(st, action, (), answer.busy_reads, with_url=False)
                raise RetryableError(answer.message, answer.retry_after)
            if isinstance(answer, BaseException):
                raise answer
            assert isinstance(answer, Accept), answer
            if answer.sync:
                st.power, st.provisioning = TARGET_POWER[action], "Succeeded"
                url = None
            else:
                url = self._land(st, action, answer.polls, answer.busy_reads, with_url=True).url
            if on_headers:
                on_headers({})
            return Accepted(url, answer.retry_after, correlation_id, f"client-{len(self.begins)}", {})

    def operation_status(self, subscription_id: str, url: str, on_headers: Any = None) -> OperationStatus:
        with self._lock:
            self.calls["operation_status"] += 1
            op = self.ops[url]
            if op.status != "InProgress":      # ended by itself (busy_reads) or by an earlier poll
                return OperationStatus(op.status)
            answer = op.polls[0] if len(op.polls) == 1 else op.polls.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            result = answer if isinstance(answer, OperationStatus) else OperationStatus(str(answer))
            if result.status != "InProgress":
                self._end(op, result.status)
            if on_headers:
                on_headers({})
            return result

    def principal(self) -> dict[str, str]:
        self.calls["principal"] += 1
        return {"type": "fake", "name": "fake-principal"}

    def activity_events(self, subscription_id: str, flt: str, select: str | None = None,
                        on_headers: Any = None) -> list[Event]:
        self.calls["activity_events"] += 1
        return []
