"""Shape test: the simulator's answers deserialize into the same SDK models, with the same
attributes populated, as Microsoft's published example answers.

For each example 200 body (VirtualMachine, VirtualMachineInstanceView, VM list, EventData list) we
deserialize the example and the simulator's answer to the corresponding call with the installed
SDKs' own deserializers, and check that every attribute vmctl relies on that is populated in the
example is populated in the simulator's model too, with a value of the same kind. Shape, not bytes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import SUB_A, poll_until

API_COMPUTE = "2026-04-01"
API_MONITOR = "2015-04-01"

_HERE = Path(__file__).resolve()
EXAMPLE_DIRS = [
    _HERE.parent / "data" / "azure-wire-examples",            # copy kept with the tests (preferred)
    Path("/work/shared/azure-wire/examples"),                  # the shared wire contract
    _HERE.parents[2] / "shared" / "azure-wire" / "examples",   # CI: shared/ cloned beside the repo
]


def example_file(rel: str) -> Path:
    for d in EXAMPLE_DIRS:
        if (d / rel).is_file():
            return d / rel
    pytest.skip(f"example {rel} not found in any of: {', '.join(map(str, EXAMPLE_DIRS))}")


def example_body(rel: str) -> Any:
    return json.loads(example_file(rel).read_text(encoding="utf-8"))["responses"]["200"]["body"]


# --------------------------------------------------------------------------- deserializers (the SDKs' own)
def as_vm(body: Any) -> Any:
    from azure.mgmt.compute import models
    from azure.mgmt.compute._utils.model_base import _deserialize

    return _deserialize(models.VirtualMachine, body)


def as_instance_view(body: Any) -> Any:
    from azure.mgmt.compute import models
    from azure.mgmt.compute._utils.model_base import _deserialize

    return _deserialize(models.VirtualMachineInstanceView, body)


def as_vm_list(body: Any) -> list[Any]:
    # azure-mgmt-compute 39 (TypeSpec) has no VirtualMachineListResult model: its list operations
    # deserialize `value` as list[VirtualMachine] exactly like this.
    from azure.mgmt.compute import models
    from azure.mgmt.compute._utils.model_base import _deserialize

    assert isinstance(body.get("value"), list)
    return _deserialize(list[models.VirtualMachine], body["value"])


def as_events(body: Any) -> list[Any]:
    from azure.mgmt.monitor.models import EventDataCollection

    return EventDataCollection.deserialize(body).value


# --------------------------------------------------------------------------- attribute paths
def _populated(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, (str, list, dict)) and len(v) == 0:
        return False
    return True


def leaves(obj: Any, path: str) -> list[Any]:
    """Populated values at `path` ("a.b[].c": [] walks every item of a list)."""
    cur = [obj]
    for part in path.split("."):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        nxt: list[Any] = []
        for o in cur:
            if o is None:
                continue
            v = getattr(o, name, None)
            if many:
                nxt.extend(v or [])
            else:
                nxt.append(v)
        cur = nxt
    return [v for v in cur if _populated(v)]


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):  # SDK enums are str subclasses; unknown values stay plain str
        return "str"
    if isinstance(v, datetime):
        return "datetime"
    if isinstance(v, int):
        return "int"
    if isinstance(v, dict):
        return "dict"
    return type(v).__name__


def assert_same_shape(example: Any, simulated: Any, paths: list[str], where: str) -> list[str]:
    """Every path populated in `example` is populated in `simulated`, with values of the same kind."""
    checked, missing, wrong = [], [], []
    for p in paths:
        ex = leaves(example, p)
        if not ex:
            continue
        checked.append(p)
        got = leaves(simulated, p)
        if not got:
            missing.append(p)
        elif kind(got[0]) != kind(ex[0]):
            wrong.append(f"{p}: example {kind(ex[0])}, simulator {kind(got[0])}")
    assert not missing, f"{where}: populated in the example but not by the simulator: {missing}"
    assert not wrong, f"{where}: {wrong}"
    assert checked, f"{where}: the example populates none of the checked attributes"
    return checked


OS_DISK = [f"storage_profile.os_disk.{a}" for a in (
    "os_type", "name", "create_option", "caching", "disk_size_gb", "managed_disk.storage_account_type",
    "managed_disk.id", "diff_disk_settings.option")]
VM_PATHS = [
    "name", "id", "type", "location", "tags", "vm_id", "hardware_profile.vm_size", "provisioning_state",
    "time_created", "availability_set.id", "virtual_machine_scale_set.id", "platform_fault_domain",
    "additional_capabilities.hibernation_enabled", "storage_profile.image_reference.publisher",
    "storage_profile.image_reference.offer", "storage_profile.image_reference.sku",
    "storage_profile.image_reference.version", "os_profile.computer_name", "os_profile.admin_username",
    "network_profile.network_interfaces[].id", *OS_DISK,
]
STATUS = ("code", "level", "display_status", "time")
VIEW_PATHS = [
    "platform_update_domain", "platform_fault_domain", "computer_name", "os_name", "os_version",
    "hyper_v_generation", "vm_agent.vm_agent_version", *(f"vm_agent.statuses[].{a}" for a in (*STATUS, "message")),
    "disks[].name", *(f"disks[].statuses[].{a}" for a in STATUS), *(f"statuses[].{a}" for a in STATUS),
]
MAINTENANCE_FIELDS = [
    "is_customer_initiated_maintenance_allowed", "pre_maintenance_window_start_time",
    "pre_maintenance_window_end_time", "maintenance_window_start_time", "maintenance_window_end_time",
    "last_operation_result_code", "last_operation_message",
]
EVENT_PATHS = [
    "caller", "correlation_id", "event_timestamp", "submission_timestamp", "operation_name.value",
    "operation_name.localized_value", "status.value", "status.localized_value", "sub_status.value",
    "sub_status.localized_value", "resource_id", "resource_group_name", "resource_provider_name.value", "properties",
    "level", "event_data_id", "claims", "http_request.client_request_id", "http_request.client_ip_address",
    "http_request.method", "event_name.value", "id", "operation_id", "subscription_id", "authorization.action",
    "authorization.scope",
]
EVENT_TOP = sorted({p.split(".")[0] for p in EVENT_PATHS})


# --------------------------------------------------------------------------- talking to the simulator
class Raw:
    def __init__(self, handle: Any, credential: Any) -> None:
        self.url = handle.url
        self.s = requests.Session()
        self.s.verify = str(handle.sim.ca_path)
        token = credential.get_token("https://management.azure.com/.default").token
        self.s.headers["Authorization"] = f"Bearer {token}"

    def json(self, path: str, **params: str) -> Any:
        r = self.s.get(self.url + path, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def vm(self, rg: str, name: str, tail: str = "", **params: str) -> Any:
        return self.json(f"/subscriptions/{SUB_A}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/"
                         f"{name}{tail}", **{"api-version": API_COMPUTE, **params})

    def list_all(self) -> Any:
        return self.json(f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines", **{"api-version": API_COMPUTE})

    def events(self, flt: str, select: str | None = None) -> Any:
        params = {"api-version": API_MONITOR, "$filter": flt}
        if select:
            params["$select"] = select
        return self.json(f"/subscriptions/{SUB_A}/providers/Microsoft.Insights/eventtypes/management/values", **params)


@pytest.fixture
def raw(sim: Any, credential: Any) -> Raw:
    return Raw(sim, credential)


# --------------------------------------------------------------------------- VirtualMachine
VM_CASES = [
    # example file, simulated VM (resource group, name) that is the same kind of VM
    ("compute/VirtualMachine_Get.json", ("rg-app", "app-01")),                 # in an availability set
    ("compute/VirtualMachine_Create_WithADiffOsDisk.json", ("rg-misc", "eph-01")),
    ("compute/VirtualMachine_Create_InAVmssWithCustomerAssignedPlatformFaultDomain.json", ("rg-misc", "node-0")),
    ("compute/VirtualMachine_Create_WithHibernationEnabled.json", ("rg-misc", "hib-01")),
]


@pytest.mark.parametrize("rel, target", VM_CASES, ids=[Path(c[0]).stem for c in VM_CASES])
def test_virtual_machine_shape(raw: Raw, rel: str, target: tuple[str, str]) -> None:
    example = as_vm(example_body(rel))
    simulated = as_vm(raw.vm(*target))
    checked = assert_same_shape(example, simulated, VM_PATHS, rel)
    assert {"name", "id", "location", "hardware_profile.vm_size", "provisioning_state",
            "storage_profile.os_disk.name"} <= set(checked)
    assert simulated.name == target[1]


def test_vm_with_expanded_instance_view_nests_the_same_view(raw: Raw) -> None:
    view_example = as_instance_view(example_body("compute/VirtualMachine_Get_InstanceView.json"))
    simulated = as_vm(raw.vm("rg-app", "app-01", **{"$expand": "instanceView"}))
    assert simulated.instance_view is not None
    assert_same_shape(view_example, simulated.instance_view, VIEW_PATHS, "$expand=instanceView")
    assert_same_shape(as_vm(example_body("compute/VirtualMachine_Get.json")), simulated, VM_PATHS, "$expand=instanceView")
    # without $expand there is no instance view, as in the Get example
    assert as_vm(raw.vm("rg-app", "app-01")).instance_view is None


# --------------------------------------------------------------------------- VirtualMachineInstanceView
def test_instance_view_shape(raw: Raw) -> None:
    example = as_instance_view(example_body("compute/VirtualMachine_Get_InstanceView.json"))
    simulated = as_instance_view(raw.vm("rg-app", "app-01", "/instanceView"))
    checked = assert_same_shape(example, simulated, VIEW_PATHS, "instanceView")
    assert {"platform_update_domain", "platform_fault_domain", "vm_agent.vm_agent_version",
            "disks[].name", "statuses[].code"} <= set(checked)
    codes = [s.code for s in simulated.statuses]
    assert codes[0].startswith("ProvisioningState/") and codes[1] == "PowerState/running"


@pytest.mark.assumption("isCustomerInitiatedMaintenanceAllowed turning false after a completed performMaintenance "
                        "is not established")
def test_instance_view_maintenance_redeploy_status(raw: Raw, compute: Any) -> None:
    # Not in the example (Azure sends it only when maintenance is planned); shape per the SDK model
    # and the wire contract README section 4. lastOperationMessage comes only with a last operation.
    simulated = as_instance_view(raw.vm("rg-app", "app-01", "/instanceView"))
    m = simulated.maintenance_redeploy_status
    assert m is not None
    missing = [f for f in MAINTENANCE_FIELDS[:-1] if not _populated(getattr(m, f))]
    assert not missing, missing
    assert m.last_operation_result_code == "None"
    assert isinstance(m.is_customer_initiated_maintenance_allowed, bool)
    for f in MAINTENANCE_FIELDS[1:5]:
        assert isinstance(getattr(m, f), datetime) and getattr(m, f).tzinfo is not None, f
    assert m.pre_maintenance_window_start_time < m.pre_maintenance_window_end_time
    assert m.last_operation_result_code in ("None", "RetryLater", "MaintenanceAborted", "MaintenanceCompleted")
    compute.virtual_machines.begin_perform_maintenance("rg-app", "app-01").result()
    done = as_instance_view(raw.vm("rg-app", "app-01", "/instanceView")).maintenance_redeploy_status
    missing = [f for f in MAINTENANCE_FIELDS if not _populated(getattr(done, f))]
    assert not missing, missing
    assert done.last_operation_result_code == "MaintenanceCompleted"
    assert done.is_customer_initiated_maintenance_allowed is False
    # a VM with no planned maintenance has none
    assert as_instance_view(raw.vm("rg-misc", "eph-01", "/instanceView")).maintenance_redeploy_status is None


# --------------------------------------------------------------------------- VM lists
# Attributes that only some VMs have (an availability set, a scale set, ...): the list must have them
# on at least one VM; everything else populated on every example item must be on every simulated item.
PER_VM = {"availability_set.id", "virtual_machine_scale_set.id", "platform_fault_domain",
          "additional_capabilities.hibernation_enabled", "storage_profile.os_disk.diff_disk_settings.option"}


@pytest.mark.parametrize("rel", ["compute/VirtualMachine_ListAll_MinimumSet_Gen.json",
                                 "compute/VirtualMachine_ListBySubscription_ByLocation.json"])
def test_vm_list_shape(raw: Raw, rel: str) -> None:
    example = as_vm_list(example_body(rel))
    body = raw.list_all()
    simulated = as_vm_list(body)
    assert simulated and len(simulated) <= 5  # first page (paging.vms: 5)
    assert body["nextLink"].startswith(raw.url + "/")
    for p in VM_PATHS:
        on_every_example = all(leaves(e, p) for e in example)
        if not on_every_example:
            continue
        have = [bool(leaves(v, p)) for v in simulated]
        if p in PER_VM:
            assert any(have), f"{rel}: no simulated VM in the list has {p}"
        else:
            assert all(have), f"{rel}: some simulated VMs lack {p}"
        assert kind(leaves(example[0], p)[0]) == kind(next(leaves(v, p)[0] for v in simulated if leaves(v, p))), p


def test_a_groups_vm_list_is_never_kinder_than_the_subscriptions(raw: Raw) -> None:
    """Wire contract §2: statusOnly is a parameter of the subscription-wide list only, and on a
    group's list $expand=instanceView is valid only with $filter. The simulator answers the group's
    list with full models and no status (statusOnly ignored), and refuses the lone $expand (400)."""
    path = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines"
    body = raw.json(path, **{"api-version": API_COMPUTE, "statusOnly": "true"})
    assert body["value"] and all("instanceView" not in v["properties"] for v in body["value"])
    assert all(v.get("tags") is not None and v["properties"].get("hardwareProfile", {}).get("vmSize")
               for v in body["value"])  # the full model, not the sparse status item
    r = raw.s.get(raw.url + path, params={"api-version": API_COMPUTE, "$expand": "instanceView"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter", r.text


# --------------------------------------------------------------------------- EventData lists
def _window() -> str:
    start = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"eventTimestamp ge '{start}'"


@pytest.fixture
def logged_power_off(sim: Any, compute: Any, raw: Raw) -> str:
    compute.virtual_machines.begin_power_off("rg-app", "app-02").result()
    flt = f"{_window()} and resourceGroupName eq 'rg-app'"
    poll_until(lambda: len(raw.events(flt)["value"]) == 3)
    return flt


def test_event_data_shape(raw: Raw, logged_power_off: str) -> None:
    body = example_body("monitor/GetActivityLogsFiltered.json")
    example = as_events(body)
    got = raw.events(logged_power_off)
    assert "value" in got
    simulated = as_events(got)
    # the example is an EndRequest of a succeeded write: compare with ours
    ours = [e for e in simulated if e.status.value == "Succeeded"]
    assert len(ours) == 1
    for ex in example:
        checked = assert_same_shape(ex, ours[0], EVENT_PATHS, "GetActivityLogsFiltered")
        assert {"caller", "correlation_id", "event_timestamp", "submission_timestamp", "operation_name.value",
                "status.value", "sub_status.value", "properties", "level", "event_data_id", "claims",
                "http_request.client_request_id"} <= set(checked)  # the example has no resourceId
    # and every event we return is a full record, not only the EndRequest
    for e in simulated:
        assert all(leaves(e, p) for p in ("caller", "correlation_id", "event_timestamp", "operation_name.value",
                                          "status.value", "resource_id", "properties", "level", "event_data_id"))
        assert all(isinstance(v, str) for v in e.properties.values())
        assert all(isinstance(v, str) for v in e.claims.values())


def test_event_data_selected_shape(raw: Raw, logged_power_off: str) -> None:
    rel = "monitor/GetTenantActivityLogsFilteredAndSelected.json"
    path = example_file(rel)
    select = json.loads(path.read_text(encoding="utf-8"))["parameters"]["$select"]
    example = as_events(example_body(rel))
    simulated = as_events(raw.events(logged_power_off, select=select))
    assert len(simulated) == 3

    def top_populated(e: Any) -> set[str]:
        return {a for a in EVENT_TOP if leaves(e, a)} | ({"id"} if e.id else set()) | (
            {"event_name"} if e.event_name else set())

    want = top_populated(example[0])
    for e in simulated:
        # same attributes present, and the same ones absent
        assert top_populated(e) == want
        assert_same_shape(example[0], e, EVENT_PATHS, rel)


# --------------------------------------------------------------------------- coverage of the example set
def _classify(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("value"), list):
        first = body["value"][0] if body["value"] else {}
        if "eventTimestamp" in first:
            return "events"
        if "virtualMachines/" in str(first.get("id", "")) and "virtualMachineScaleSets" not in str(first.get("id")):
            return "vm-list"
        return None
    if "statuses" in body and ("vmAgent" in body or "platformUpdateDomain" in body):
        return "instance-view"
    if body.get("type") == "Microsoft.Compute/virtualMachines":
        return "vm"
    return None


COVERED = {c[0] for c in VM_CASES} | {
    "compute/VirtualMachine_Get_InstanceView.json", "compute/VirtualMachine_ListAll_MinimumSet_Gen.json",
    "compute/VirtualMachine_ListBySubscription_ByLocation.json", "monitor/GetActivityLogsFiltered.json",
    "monitor/GetTenantActivityLogsFilteredAndSelected.json",
}


def test_every_relevant_example_is_covered() -> None:
    """Every example with a VM / instance view / VM list / EventData list 200 body has a case above,
    and the copy kept in tests/data is identical to the shared one when that is present."""
    found: dict[str, str] = {}
    dirs = [d for d in EXAMPLE_DIRS if d.is_dir()]
    if not dirs:
        pytest.skip("no example directory found")
    for d in dirs:
        for f in sorted([*d.glob("compute/*.json"), *d.glob("monitor/*.json")]):
            rel = f.relative_to(d).as_posix()
            data = json.loads(f.read_text(encoding="utf-8"))
            body = (data.get("responses", {}).get("200") or {}).get("body")
            what = _classify(body)
            if what:
                found[rel] = what
                copy = EXAMPLE_DIRS[0] / rel
                assert copy.is_file(), f"{rel} is a {what} example: copy it to {EXAMPLE_DIRS[0]} and add a case"
                assert copy.read_bytes() == f.read_bytes(), f"{copy} differs from {f}"
    assert set(found) == COVERED, sorted(set(found) ^ COVERED)
