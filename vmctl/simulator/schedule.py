"""ComputeSchedule (`Microsoft.ComputeSchedule`, wire contract §12): the nine POSTs, their
operations' states, and the VM operations they run.

Every request is one POST answered `200` with a JSON body (not an LRO). Execute*/Submit* create
one operation (a GUID `operationId`) per VM id; each walks `PendingScheduling` -> (`Scheduled`
until a Submit's deadline) -> `PendingExecution` -> `Executing` -> `Succeeded`/`Failed`, or
`Cancelled` (CancelOperations before it started), or `Blocked` (injected) for a while. `Executing`
is a real VM operation started through the backend (`Backend.begin`), so ARM reads, instance
views and the Activity Log show what it does; it draws on the subscription's Compute bucket
(DeleteVM for deallocate and hibernate, UpdateVM for start) and waits in `PendingExecution`
while that bucket is empty, as ComputeSchedule paces itself instead of failing. A failed attempt
is tried again per `retryPolicy` (`retryCount` more attempts, each starting within
`retryWindowInMinutes` of the request). Fault rules for `virtualMachines.<action>` apply to each
attempt as they do to an ARM POST; the error word `Blocked` holds the operation `Blocked`.

Decisions where Azure's behaviour is not established (docs/simulator.md, evidence table):
- a VM with a pending (non-terminal) operation: per-VM `OperationConflict`, except a Deallocate
  over a Start, which preempts it (the Start ends `Failed`, `OperationCancelled`);
- CancelOperations of an operation that is already `Executing` (or terminal) changes nothing: the
  result shows its state as it is (the stricter case: a client cannot stop work that has begun);
- the VM operations' Activity Log events carry the caller `Microsoft.ComputeSchedule` and a fresh
  correlation id per VM operation, not the request's principal or `correlationid`;
- an unknown VM id: a per-VM `errorCode: ResourceNotFound`; an id in another subscription or
  region, duplicates, more than 100 ids, `retryCount` outside 0-7, `retryWindowInMinutes` outside
  0 and 5-120: 400 `BadRequest` for the whole request.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend, CallContext, Operation, Vm, iso
from .exceptions import NoRegisteredProviderFound, ScheduleRequestInvalid, SimError

API_VERSIONS = ("2024-10-01", "2025-05-01")
MAX_IDS = 100
MAX_RETRY_COUNT = 7
MAX_RETRY_WINDOW = 120
MIN_RETRY_WINDOW = 5
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
NOT_STARTED = frozenset({"PendingScheduling", "Scheduled", "PendingExecution", "Blocked"})
SERVICE_CALLER = "Microsoft.ComputeSchedule"
# path segment (lower case) -> (operation kind, opType)
WRITES = {
    "virtualmachinesexecutedeallocate": ("execute", "Deallocate"),
    "virtualmachinesexecutestart": ("execute", "Start"),
    "virtualmachinesexecutehibernate": ("execute", "Hibernate"),
    "virtualmachinessubmitdeallocate": ("submit", "Deallocate"),
    "virtualmachinessubmitstart": ("submit", "Start"),
    "virtualmachinessubmithibernate": ("submit", "Hibernate"),
}
READS = {"virtualmachinesgetoperationstatus": "status", "virtualmachinescanceloperations": "cancel",
         "virtualmachinesgetoperationerrors": "errors"}
# opType -> (the VM action, hibernate, Compute's API-rate policy)
VM_ACTION = {"Deallocate": ("deallocate", False, "DeleteVM"), "Hibernate": ("deallocate", True, "DeleteVM"),
             "Start": ("start", False, "UpdateVM")}
_VM_ID = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/microsoft\.compute/"
                    r"virtualmachines/([^/]+)$", re.IGNORECASE)
_HTTP_CODE = {"429": "TooManyRequests", "500": "InternalServerError", "502": "BadGateway",
              "503": "ServiceUnavailable", "504": "GatewayTimeout", "409": "Conflict", "400": "BadRequest",
              "401": "AuthenticationFailed", "403": "AuthorizationFailed"}


@dataclass
class ScheduleOp:
    id: str
    vm: Vm
    resource_id: str               # as the request spelled it (echoed in every answer)
    op_type: str                   # Deallocate | Start | Hibernate
    submit: bool
    location: str
    created: float
    deadline: float                # Execute*: the receipt time; Submit*: the requested deadline
    deadline_type: str
    retry: dict[str, int] | None   # the request's retryPolicy, echoed
    state: str = "PendingScheduling"
    error: tuple[str, str] | None = None
    completed: float | None = None
    compute: Operation | None = None
    attempts: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    activated: float | None = None  # when it first became due (GetOperationErrors' activationTime)
    reserved: bool = False          # holds its place in the Compute bucket's queue

    @property
    def retry_count(self) -> int:
        return (self.retry or {}).get("retryCount") or 0

    @property
    def last_retry_start(self) -> float:
        """The latest moment a retry may start: the deadline plus retryWindowInMinutes."""
        return self.deadline + 60.0 * ((self.retry or {}).get("retryWindowInMinutes") or 0)

    def details(self, time_zone: str) -> dict[str, Any]:
        err = {"errorCode": self.error[0], "errorDetails": self.error[1]} if self.error else None
        return {"operationId": self.id, "resourceId": self.resource_id, "opType": self.op_type,
                "subscriptionId": self.vm.spec.subscription_id, "deadline": iso(self.deadline),
                "deadlineType": self.deadline_type, "state": self.state, "timeZone": time_zone,
                "resourceOperationError": err,
                "completedAt": iso(self.completed) if self.completed is not None else None,
                "retryPolicy": self.retry}

    def result(self, time_zone: str) -> dict[str, Any]:
        return {"resourceId": self.resource_id, "errorCode": None, "errorDetails": None,
                "operation": self.details(time_zone)}


class ScheduleState:
    """Every ComputeSchedule operation and its clock; built with the backend (reset clears it)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.ops: dict[str, ScheduleOp] = {}
        self.pending: dict[int, ScheduleOp] = {}   # id(vm) -> its non-terminal operation
        self._due: list[tuple[float, int, ScheduleOp]] = []
        self._seq = itertools.count()

    # ------------------------------------------------------------ time
    def _at(self, op: ScheduleOp, when: float) -> None:
        heapq.heappush(self._due, (when, next(self._seq), op))

    def settle(self, now: float) -> bool:
        """Advance every operation whose next step is due, one step each (a step may start a VM
        operation that the backend ends before the next pass); True when any step was taken."""
        due = self._due
        batch = []
        while due and due[0][0] <= now:
            batch.append(heapq.heappop(due))
        for when, _, op in batch:
            if op.state not in TERMINAL:
                self._advance(op, when)
        return bool(batch)

    def _scaled(self, seconds: float) -> float:
        return seconds / self.backend.time_scale

    def _advance(self, op: ScheduleOp, t: float) -> None:
        spec = self.backend.fleet.computeschedule
        if op.state == "PendingScheduling":
            if op.submit and op.deadline > t:
                op.state = "Scheduled"
                self._at(op, op.deadline)
            else:
                op.state = "PendingExecution"
                self._at(op, t + self._scaled(spec.queue_seconds))
        elif op.state == "Scheduled":
            op.state = "PendingExecution"
            self._at(op, t + self._scaled(spec.queue_seconds))
        elif op.state == "Blocked":
            if t <= op.last_retry_start:
                op.state = "PendingExecution"
                self._execute(op, t)
            else:
                code = "SchedulingOperationsBlockedException" if op.submit else "NonSchedulingOperationsBlockedException"
                self._end(op, t, "Failed", (code, "Operations are blocked in this region; the request may succeed later."))
        elif op.state == "PendingExecution":
            self._execute(op, t)
        elif op.state == "Executing":
            c = op.compute
            assert c is not None
            if c.status == "InProgress":
                self._at(op, max(t, c.ends))
            elif c.status == "Succeeded":
                self._end(op, c.end_time if c.end_time is not None else t, "Succeeded", None)
            else:
                code, message = c.fail or ("OperationFailed", f"The operation ended {c.status}.")
                self._attempt_failed(op, c.end_time if c.end_time is not None else t, code, message, c.id)

    def _execute(self, op: ScheduleOp, t: float) -> None:
        """PendingExecution is due: start the VM operation, unless the Compute bucket is empty (then
        wait for it), a fault blocks or fails this attempt, or Compute refuses it."""
        b = self.backend
        if op.activated is None:
            op.activated = t
        kind, hibernate, policy = VM_ACTION[op.op_type]
        vm = op.vm
        if b.throttle is not None and not op.reserved:
            # ComputeSchedule paces itself: the attempt queues for its Compute token, never a 429
            key = f"{vm.spec.resource_group.lower()}/{vm.name.lower()}"
            wait = b.throttle.reserve(t, vm.spec.subscription_id, policy, key)
            if wait > 0:
                op.reserved = True
                self._at(op, t + wait)
                return
        op.reserved = False
        fault = b.faults.take(f"virtualMachines.{kind}", vm.name, lro=True) if b.faults is not None else None
        if fault is not None and fault.kind == "lro" and fault.spec.error.lower() == "blocked":
            op.state = "Blocked"
            self._at(op, t + self._scaled(fault.spec.delay_seconds or b.fleet.computeschedule.blocked_seconds))
            return
        op.attempts += 1
        fail: tuple[str, str] | None = None
        extra, cancel = 0.0, False
        if fault is not None:
            if fault.kind in ("http", "drop"):
                code = _HTTP_CODE.get(fault.spec.error, "InternalServerError")
                self._attempt_failed(op, t, code, fault.spec.message or f"Compute answered {code} (injected).", None)
                return
            if fault.kind == "slow":
                extra = fault.spec.delay_seconds or 60.0
            elif fault.kind == "cancel":
                cancel = True
            elif fault.kind == "lro":
                fail = (fault.spec.error, fault.spec.message or _fail_message(fault.spec.error))
        ctx = CallContext(caller=SERVICE_CALLER, claims={"appid": SERVICE_CALLER, "name": SERVICE_CALLER},
                          correlation_id=str(uuid.uuid4()), client_request_id=str(uuid.uuid4()))
        try:
            c = b.begin(vm, kind, ctx, hibernate=hibernate, fail=fail, extra_seconds=extra, cancel=cancel, at=t)
        except SimError as err:
            self._attempt_failed(op, t, err.code, err.message, None)
            return
        op.state, op.compute = "Executing", c
        self._at(op, c.ends)

    def _attempt_failed(self, op: ScheduleOp, t: float, code: str, message: str, crp: str | None) -> None:
        kind = VM_ACTION[op.op_type][0]
        op.errors.append({"errorCode": code, "errorDetails": message, "timestamp": iso(t),
                          "azureOperationName": f"Microsoft.Compute/virtualMachines/{kind}/action",
                          "crpOperationId": crp})
        op.compute = None
        retry_at = t + self._scaled(self.backend.fleet.computeschedule.retry_delay_seconds)
        if op.attempts <= op.retry_count and retry_at <= op.last_retry_start:
            op.state = "PendingExecution"
            self._at(op, retry_at)
            return
        self._end(op, t, "Failed", (code, message))

    def _end(self, op: ScheduleOp, t: float, state: str, error: tuple[str, str] | None) -> None:
        op.state, op.error, op.completed = state, error, t
        if self.pending.get(id(op.vm)) is op:
            del self.pending[id(op.vm)]

    # ------------------------------------------------------------ requests
    def create(self, vm: Vm, resource_id: str, op_type: str, submit: bool, location: str, now: float,
               deadline: float, deadline_type: str, retry: dict[str, int] | None) -> dict[str, Any]:
        """One VM of an Execute*/Submit*: its result item (an operation, or a per-VM error)."""
        other = self.pending.get(id(vm))
        if other is not None:
            if op_type == "Deallocate" and other.op_type == "Start":
                self._end(other, now, "Failed", ("OperationCancelled", "Preempted by user request"))
            else:
                return {"resourceId": resource_id, "errorCode": "OperationConflict",
                        "errorDetails": f"The virtual machine already has a pending operation {other.id} "
                                        f"({other.op_type}, {other.state}); wait for it to end or cancel it.",
                        "operation": None}
        op = ScheduleOp(str(uuid.uuid4()), vm, resource_id, op_type, submit, location, now, deadline, deadline_type,
                        retry)
        self.ops[op.id] = op
        self.pending[id(vm)] = op
        self._at(op, now + self._scaled(self.backend.fleet.computeschedule.scheduling_seconds))
        return op.result("UTC")

    def cancel(self, op: ScheduleOp, now: float) -> None:
        if op.state in NOT_STARTED:
            self._end(op, now, "Cancelled", ("OperationCancelledByUser", f"Operation: {op.id} was cancelled by the user."))


def _fail_message(code: str) -> str:
    if code == "AllocationFailed":
        return ("Allocation failed. We do not have sufficient capacity for the requested VM size in this region. "
                "Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance")
    return f"The operation failed with error code '{code}' (injected by the simulator)."


# ---------------------------------------------------------------- the HTTP side
def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise ScheduleRequestInvalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ScheduleRequestInvalid("The request body must be a JSON object.")
    return body


def _key(body: dict[str, Any], name: str, *aliases: str) -> Any:
    """A body key as the spec spells it, or one of its documented aliases (wire §12.2: `deadline` /
    `deadLine`, `timezone` / `timeZone`). Whether the service matches other spellings is not
    established: the stricter reading, another spelling is an unknown field."""
    return next((body[k] for k in (name, *aliases) if k in body), None)


def _retry_policy(params: Any) -> dict[str, int] | None:
    if params is None:
        return None
    if not isinstance(params, dict):
        raise ScheduleRequestInvalid("executionParameters must be an object.")
    policy = _key(params, "retryPolicy")
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise ScheduleRequestInvalid("executionParameters.retryPolicy must be an object.")
    out: dict[str, int] = {}
    count, window = _key(policy, "retryCount"), _key(policy, "retryWindowInMinutes")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_RETRY_COUNT:
            raise ScheduleRequestInvalid(f"retryCount {count!r} is not valid: give a whole number from 0 to "
                                         f"{MAX_RETRY_COUNT}.")
        out["retryCount"] = count
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or \
                not (window == 0 or MIN_RETRY_WINDOW <= window <= MAX_RETRY_WINDOW):
            raise ScheduleRequestInvalid(f"retryWindowInMinutes {window!r} is not valid: give a whole number of "
                                         f"minutes from {MIN_RETRY_WINDOW} to {MAX_RETRY_WINDOW}.")
        out["retryWindowInMinutes"] = window
    return out


def _ids(body: dict[str, Any], key: str, what: str) -> list[str]:
    """`resources.ids` (Execute*, Submit*) or `operationIds` (a list), as the spec shapes them."""
    ids = _key(body, key)
    if key == "resources":
        if not isinstance(ids, dict):
            raise ScheduleRequestInvalid("resources is required: an object with ids.")
        ids = _key(ids, "ids")
    if not isinstance(ids, list) or not ids:
        raise ScheduleRequestInvalid(f"No {what} provided in request.")
    if not all(isinstance(x, str) and x for x in ids):
        raise ScheduleRequestInvalid(f"Every entry of {key} must be a non-empty string.")
    if len(ids) > MAX_IDS:
        raise ScheduleRequestInvalid(f"Over {MAX_IDS} {what} provided in request ({len(ids)}).")
    if len({x.lower() for x in ids}) != len(ids):
        raise ScheduleRequestInvalid(f"The request names the same {what[:-1]} more than once.")
    return ids


def _parse_time(text: Any, where: str) -> float:
    from datetime import datetime, timezone

    if not isinstance(text, str):
        raise ScheduleRequestInvalid(f"{where} must be a date-time.")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleRequestInvalid(f"{where} '{text}' is not a date-time.") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class ScheduleApi:
    """The handler of the nine ComputeSchedule routes (called by responses.Handler)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def handle(self, segment: str, api_version: str, sub: str, location: str, raw: bytes,
               now: float) -> dict[str, Any]:
        low = segment.lower()
        if api_version not in API_VERSIONS:
            raise NoRegisteredProviderFound(location, api_version, f"locations/{segment}", ", ".join(API_VERSIONS))
        self.backend.subscription(sub)
        body = _json_body(raw)
        state = self.backend.schedule
        if low in WRITES:
            return self._write(low, sub, location, body, now)
        action = READS[low]
        ids = _ids(body, "operationIds", "operationids")
        if action != "errors" and not isinstance(_key(body, "correlationid"), str):
            raise ScheduleRequestInvalid("correlationid is required.")
        # an operation belongs to the subscription and region of the path it was created under
        # (wire §12: every call is scoped to both); asked from elsewhere, it is not found
        found = (state.ops.get(i) for i in ids)
        ops = [op if op is not None and op.vm.spec.subscription_id == sub.lower()
               and op.location.lower() == location.lower() else None for op in found]
        if action == "errors":
            return {"results": [self._errors(i, op) for i, op in zip(ids, ops)]}
        results = []
        for i, op in zip(ids, ops):
            if op is None:
                results.append({"resourceId": None, "errorCode": "OperationNotFound",
                                "errorDetails": f"Operation {i} was not found.", "operation": None})
                continue
            if action == "cancel":
                state.cancel(op, now)
            results.append(op.result(""))
        return {"results": results}

    def _write(self, low: str, sub: str, location: str, body: dict[str, Any], now: float) -> dict[str, Any]:
        b = self.backend
        kind, op_type = WRITES[low]
        if not isinstance(_key(body, "correlationid"), str):
            raise ScheduleRequestInvalid("correlationid is required.")
        ids = _ids(body, "resources", "resourceids")
        params = _key(body, "executionParameters")
        if params is None:  # required by the spec; the SDK sends {} when nothing is set
            raise ScheduleRequestInvalid("executionParameters is required.")
        retry = _retry_policy(params)
        deadline, deadline_type = now, "InitiateAt"
        if kind == "submit":
            schedule = _key(body, "schedule")
            if not isinstance(schedule, dict):
                raise ScheduleRequestInvalid("schedule is required.")
            deadline = _parse_time(_key(schedule, "deadline", "deadLine"), "schedule.deadline")
            deadline_type = str(_key(schedule, "deadlineType") or "")
            if deadline_type not in ("InitiateAt", "CompleteBy"):
                raise ScheduleRequestInvalid("schedule.deadlineType must be InitiateAt or CompleteBy.")
            if deadline < now:
                raise ScheduleRequestInvalid("schedule.deadline is in the past.")
        found: list[tuple[str, Vm | None]] = []
        for rid in ids:
            m = _VM_ID.match(rid)
            if m is None:
                raise ScheduleRequestInvalid(f"'{rid}' is not the resource id of a virtual machine.")
            if m.group(1).lower() != sub.lower():
                raise ScheduleRequestInvalid(f"'{rid}' is not in subscription {sub}: every resource of a request "
                                             "must be in the subscription of its path.")
            vm = b.vms.get((m.group(1).lower(), m.group(2).lower(), m.group(3).lower()))
            if vm is not None and vm.spec.location.lower() != location.lower():
                raise ScheduleRequestInvalid(f"'{rid}' is in location '{vm.spec.location}', not '{location}': every "
                                             "resource of a request must be in the location of its path.")
            found.append((rid, vm))
        results = []
        for rid, vm in found:
            if vm is None:
                results.append({"resourceId": rid, "errorCode": "ResourceNotFound",
                                "errorDetails": f"The virtual machine '{rid}' was not found.", "operation": None})
                continue
            results.append(b.schedule.create(vm, rid, op_type, kind == "submit", location, now, deadline,
                                             deadline_type, retry))
        return {"description": f"{op_type} Resource request", "type": "VirtualMachines", "location": location,
                "results": results}

    def _errors(self, op_id: str, op: ScheduleOp | None) -> dict[str, Any]:
        if op is None:
            return {"operationId": op_id, "creationTime": None, "activationTime": None, "completedAt": None,
                    "operationErrors": [], "requestErrorCode": "OperationNotFound",
                    "requestErrorDetails": f"Operation {op_id} was not found."}
        return {"operationId": op.id, "creationTime": iso(op.created),
                "activationTime": iso(op.activated if op.activated is not None else op.deadline),
                "completedAt": iso(op.completed) if op.completed is not None else None,
                "operationErrors": list(op.errors), "requestErrorCode": None, "requestErrorDetails": None}
