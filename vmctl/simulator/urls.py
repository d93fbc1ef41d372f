"""The ARM route table (as moto's urls.py): method, path template, operation name, ARM bucket,
Compute policy and handler of every ARM route, and `match()` to find a request's route.

Templates are lower case; path segments match case-insensitively and `{name}` captures one
segment. Every GET route also answers HEAD. A handler is the name of a method on the responses
Handler, or a callable taking the same arguments (ARM routes: request, query, params, now,
headers; the POST action route: see `Handler._lro`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: str             # the name in /_sim/stats and fault rules ("{action}" filled in)
    arm: str | None            # ARM's subscription bucket: "reads", "writes" or None (not counted)
    policy: str | None         # Compute's API-rate policy (None: none)
    handler: str | Callable[..., Any]
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.template.strip("/").split("/")))


@dataclass(frozen=True)
class Match:
    route: Route
    name: str                  # operation name, the action filled in
    params: dict[str, str]
    arm: str | None
    policy: str | None


_VM = "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.compute/virtualmachines/{vm}"

ROUTES: list[Route] = [
    Route("GET", "/subscriptions", "subscriptions.list", None, None, "_subs_list"),
    Route("GET", "/tenants", "tenants.list", None, None, "_tenants"),
    Route("GET", "/subscriptions/{sub}", "subscriptions.get", "reads", None, "_sub_get"),
    Route("GET", "/subscriptions/{sub}/resourcegroups", "resourceGroups.list", "reads", None, "_rg_list"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}", "resourceGroups.get", "reads", None, "_rg_get"),
    Route("GET", "/subscriptions/{sub}/providers/microsoft.compute/virtualmachines",
          "virtualMachines.listAll", "reads", "HighCostGet", "_vm_list"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.compute/virtualmachines",
          "virtualMachines.list", "reads", "HighCostGet", "_vm_list"),
    Route("GET", _VM, "virtualMachines.get", "reads", "LowCostGet", "_vm_get"),
    Route("GET", _VM + "/instanceview", "virtualMachines.instanceView", "reads", "LowCostGet", "_vm_iv"),
    Route("POST", _VM + "/{action}", "virtualMachines.{action}", "writes", None, "_lro"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.compute/availabilitysets",
          "availabilitySets.list", "reads", "LowCostGet", "_as_list"),
    Route("GET", "/subscriptions/{sub}/providers/microsoft.compute/availabilitysets",
          "availabilitySets.listBySubscription", "reads", "LowCostGet", "_as_list_sub"),
    Route("GET", "/subscriptions/{sub}/resources", "resources.list", "reads", None, "_resources"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}/resources", "resources.listByResourceGroup", "reads", None,
          "_resources"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.compute/availabilitysets/{aset}",
          "availabilitySets.get", "reads", "LowCostGet", "_as_get"),
    Route("GET", "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.network/networkinterfaces/{nic}",
          "networkInterfaces.get", "reads", None, "_nic_get"),
    Route("GET", "/subscriptions/{sub}/providers/microsoft.compute/locations/{loc}/operations/{op}",
          "operations.get", "reads", "GetOperation", "_op_get"),
    Route("GET", "/subscriptions/{sub}/providers/microsoft.insights/eventtypes/management/values",
          "activityLogs.list", "reads", None, "_activity"),
    # Azure Resource Graph (wire §13): tenant-level, no ARM subscription bucket; its own per-principal quota (graph.py)
    Route("POST", "/providers/microsoft.resourcegraph/resources", "resourceGraph.resources", None, None, "_graph"),
]

# ComputeSchedule (wire §12.1): nine POSTs, each an ARM write (status polls included), no Compute
# policy on the request itself (the VM operations it starts draw on Compute's buckets: schedule.py)
_SCHEDULE = "/subscriptions/{sub}/providers/microsoft.computeschedule/locations/{loc}/"
SCHEDULE_OPERATIONS = {
    "virtualmachinesexecutedeallocate": "computeSchedule.executeDeallocate",
    "virtualmachinesexecutestart": "computeSchedule.executeStart",
    "virtualmachinesexecutehibernate": "computeSchedule.executeHibernate",
    "virtualmachinessubmitdeallocate": "computeSchedule.submitDeallocate",
    "virtualmachinessubmitstart": "computeSchedule.submitStart",
    "virtualmachinessubmithibernate": "computeSchedule.submitHibernate",
    "virtualmachinesgetoperationstatus": "computeSchedule.getOperationStatus",
    "virtualmachinescanceloperations": "computeSchedule.cancelOperations",
    "virtualmachinesgetoperationerrors": "computeSchedule.getOperationErrors",
}
ROUTES += [Route("POST", _SCHEDULE + segment, name, "writes", None, "_schedule")
           for segment, name in SCHEDULE_OPERATIONS.items()]

# the `{action}` of the POST route (lower case) -> the operation kind
ACTIONS = {"poweroff": "powerOff", "deallocate": "deallocate", "start": "start", "restart": "restart",
           "performmaintenance": "performMaintenance", "redeploy": "redeploy"}
_POLICY_FOR_ACTION = {"deallocate": "DeleteVM"}


def match(method: str, path: str) -> Match | None:
    if method == "HEAD":  # every GET route answers HEAD (existence check)
        method = "GET"
    segs = [s for s in path.strip("/").split("/")]
    for route in ROUTES:
        tmpl = route.segments
        if route.method != method or len(tmpl) != len(segs):
            continue
        params: dict[str, str] = {}
        for t, s in zip(tmpl, segs):
            if t.startswith("{"):
                params[t[1:-1]] = s
            elif t != s.lower():
                break
        else:
            if "action" in params:
                action = ACTIONS.get(params["action"].lower())
                if action is None:
                    continue
                params["action"] = action
                return Match(route, route.operation.format(action=action), params, route.arm,
                             _POLICY_FOR_ACTION.get(action, "UpdateVM"))
            return Match(route, route.operation, params, route.arm, route.policy)
    return None
