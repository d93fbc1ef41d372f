"""The simulator answers like Azure by default ("Azure-true"), driven by the real SDKs.

azure-mgmt-compute, azure-mgmt-monitor, azure-mgmt-resource and azure-identity talk HTTPS to an
in-process simulator; nothing is mocked. Each fleet is an inline mapping with short operation times.
Tests marked `assumption` depend on a behaviour that is not established on Azure (the marker's
text says which); docs/simulator.md lists the evidence for every modelled behaviour.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import SUB_A, SimHandle, poll_until, power_state

RG, RG_Q = "rg-p", "rg-q"
SCOPE = "https://management.azure.com/.default"
API = "2026-04-01"
PREEMPTED = "The operation has been preempted by a more recent operation."
RESTART_REFUSED = "The operation requires the VM to be running (or set to run)."
OPS = ("powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy")

FLEET: dict[str, Any] = {
    "tenant_id": "11111111-0000-0000-0000-000000000000",
    "identity": {"upn": "tester@contoso.example"},
    "time": {"lro_seconds": {op: 0.2 for op in OPS}, "activity_log_delay_seconds": 0,
             "lro_retry_after": 0.05, "jitter": 0},
    "paging": {"vms": 50, "resources": 4},
    "subscriptions": [{"id": SUB_A, "name": "sub-a", "resource_groups": [
        {"name": RG, "availability_sets": [{"name": "as-p", "update_domains": 2, "fault_domains": 2}], "vms": [
            {"name": "web-{i}", "count": 2, "availability_set": "as-p", "tags": {"env": "prod", "tier": "web"},
             "maintenance": {"allowed": True, "self_service_window": ["-1d", "1d"], "scheduled_window": ["2d", "3d"]}},
            {"name": "run-1", "zone": "1", "tags": {"env": "dev"}},
            {"name": "run-2", "tags": {"env": "dev"}},
            {"name": "stop-1", "power_state": "stopped", "tags": {"env": "dev"}},
            {"name": "dealloc-1", "power_state": "deallocated", "tags": {"env": "dev"}},
            {"name": "blind-1", "status_in_list": False},
        ]},
        {"name": RG_Q, "vms": [{"name": "q-1", "tags": {"env": "PROD"}}]},
    ]}],
}


# --------------------------------------------------------------------------- helpers
def fleet(platform: dict[str, Any] | None = None, lro: dict[str, float] | None = None,
          **time_cfg: Any) -> dict[str, Any]:
    data = copy.deepcopy(FLEET)
    if platform is not None:
        data["platform"] = platform
    if lro:
        data["time"]["lro_seconds"].update(lro)
    for k, v in time_cfg.items():
        if v is None:
            data["time"].pop(k, None)
        else:
            data["time"][k] = v
    return data


class Sim:
    """A simulator with SDK clients and raw HTTPS bound to it."""

    def __init__(self, make_sim: Callable[..., SimHandle], data: dict[str, Any], **kwargs: Any) -> None:
        self.h = make_sim(data, **kwargs)
        self.cred = DefaultAzureCredential()
        self.compute = ComputeManagementClient(self.cred, SUB_A, base_url=self.h.url)
        self.monitor = MonitorManagementClient(self.cred, SUB_A, base_url=self.h.url)
        self.resource = ResourceManagementClient(self.cred, SUB_A, base_url=self.h.url)
        self.http = requests.Session()
        self.http.verify = str(self.h.sim.ca_path)

    def raw(self, method: str, url: str, *, token: bool = True, **kwargs: Any) -> requests.Response:
        url = url if url.startswith("https://") else self.h.url + url
        headers = {"Authorization": f"Bearer {self.cred.get_token(SCOPE).token}"} if token else {}
        return self.http.request(method, url, headers=headers, timeout=10, **kwargs)

    def act(self, **body: Any) -> requests.Response:
        return self.http.post(self.h.url + "/_sim/act", json=body, timeout=10)

    def events(self, cid: str | None = None) -> list[Any]:
        start = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
        flt = f"eventTimestamp ge '{start}'" + (f" and correlationId eq '{cid}'" if cid else "")
        return list(self.monitor.activity_logs.list(filter=flt))


def cid_kw(cid: str) -> dict[str, Any]:
    return {"headers": {"x-ms-correlation-request-id": cid}}


def recorder() -> tuple[list[Any], Callable[[Any], None]]:
    seen: list[Any] = []
    return seen, lambda pipeline_response: seen.append(pipeline_response.http_response)


def refused(begin: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The synchronous 409 Compute answers: no LRO starts."""
    with pytest.raises(ResourceExistsError) as info:
        begin(*args, **kwargs)
    assert info.value.status_code == 409
    assert info.value.error is not None and info.value.error.code == "OperationNotAllowed"
    return info.value.error


# --------------------------------------------------------------------------- 1. statusOnly item shapes
def test_status_only_maintenance_stays_in_instance_views(make_sim: Any) -> None:
    s = Sim(make_sim, fleet())
    vms = s.compute.virtual_machines
    items = {v.name: v for v in vms.list_all(status_only=True)}
    assert items["web-1"].instance_view.maintenance_redeploy_status is None  # default: never in status lists
    assert items["blind-1"].instance_view is None  # Azure could not read this VM's status
    assert items["web-1"].instance_view.platform_fault_domain == 0
    assert items["web-2"].instance_view.platform_fault_domain == 1
    # the sparse item's exact key set, as captured from Azure
    body = s.raw("GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines"
                        f"?api-version={API}&statusOnly=true").json()
    item = next(v for v in body["value"] if v["name"] == "web-1")
    assert set(item) == {"id", "name", "type", "location", "properties"}
    assert set(item["properties"]) == {"vmId", "provisioningState", "hardwareProfile", "instanceView"}
    assert item["properties"]["hardwareProfile"] == {}
    assert set(item["properties"]["instanceView"]) == {"platformFaultDomain", "statuses"}
    assert set(next(v for v in body["value"] if v["name"] == "run-1")["properties"]["instanceView"]) == {"statuses"}
    # ... and maintenance is always in the VM's own instance view, with $expand, and in $expand lists
    assert vms.instance_view(RG, "web-1").maintenance_redeploy_status.is_customer_initiated_maintenance_allowed
    assert vms.get(RG, "web-1", expand="instanceView").instance_view.maintenance_redeploy_status is not None
    expanded = {v.name: v for v in vms.list_all(expand="instanceView")}
    assert expanded["web-1"].instance_view.maintenance_redeploy_status is not None
    assert expanded["web-1"].tags == {"env": "prod", "tier": "web"}
    # the plain list is the model without instance view
    assert all(v.instance_view is None and v.hardware_profile.vm_size for v in vms.list_all())


@pytest.mark.assumption("whether statusOnly items carry maintenanceRedeployStatus is not established (one capture, "
                        "no maintenance pending); the richer shapes are options")
@pytest.mark.parametrize("shape", ["sparse", "full"])
def test_status_only_options_full_shape_and_maintenance(make_sim: Any, shape: str) -> None:
    s = Sim(make_sim, fleet(platform={"status_only_items": shape, "maintenance_in_status_list": True}))
    items = {v.name: v for v in s.compute.virtual_machines.list_all(status_only="True")}
    mrs = items["web-1"].instance_view.maintenance_redeploy_status
    assert mrs is not None and mrs.is_customer_initiated_maintenance_allowed is True
    assert items["run-1"].instance_view.maintenance_redeploy_status is None
    assert items["blind-1"].instance_view is None
    full = shape == "full"
    for name in ("web-1", "run-1", "stop-1"):
        vm = items[name]
        assert (vm.tags is not None) is full, name
        assert (vm.hardware_profile.vm_size == "Standard_D2s_v5") is full, name
        assert (vm.storage_profile is not None) is full, name
    assert (items["run-1"].zones == ["1"]) is full
    assert (items["web-1"].availability_set is not None) is full
    assert (items["web-1"].instance_view.platform_update_domain == 0) is full
    assert items["stop-1"].instance_view.statuses[1].code == "PowerState/stopped"


# --------------------------------------------------------------------------- 2. state refusals
def test_restart_of_a_deallocated_vm_is_refused_and_logged(make_sim: Any) -> None:
    s = Sim(make_sim, fleet())
    cid = str(uuid.uuid4())
    err = refused(s.compute.virtual_machines.begin_restart, RG, "dealloc-1", **cid_kw(cid))
    assert err.message == RESTART_REFUSED
    assert power_state(s.compute, RG, "dealloc-1") == "deallocated"
    assert s.h.stats()["operations_started"] == 0
    got = s.events(cid)
    assert [e.status.value for e in got] == ["Failed", "Started"]
    assert got[0].operation_name.value == "Microsoft.Compute/virtualMachines/restart/action"
    assert "OperationNotAllowed" in got[0].properties["statusMessage"]


@pytest.mark.assumption("restart of a stopped (allocated) VM, or while a powerOff/deallocate runs, gets the same 409 "
                        "as a deallocated VM ('set to run' wording); no capture")
def test_restart_of_a_stopped_or_stopping_vm_is_refused(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro={"powerOff": 5, "deallocate": 5}))
    vms = s.compute.virtual_machines
    assert refused(vms.begin_restart, RG, "stop-1").message == RESTART_REFUSED
    vms.begin_power_off(RG, "run-1", polling=False)
    vms.begin_deallocate(RG, "run-2", polling=False)
    for name in ("run-1", "run-2"):
        assert refused(vms.begin_restart, RG, name).message == RESTART_REFUSED
    assert (power_state(s.compute, RG, "run-1"), power_state(s.compute, RG, "run-2")) == ("stopping", "deallocating")
    assert s.h.stats()["operations_started"] == 2  # the refusals did not preempt anything


def test_power_off_of_a_deallocated_or_deallocating_vm_is_refused(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro={"deallocate": 0.4}))
    vms = s.compute.virtual_machines
    msg = "Operation 'powerOff' is not allowed on VM '{}' since the VM is either deallocated or marked to be deallocated."
    assert refused(vms.begin_power_off, RG, "dealloc-1").message == msg.format("dealloc-1")
    assert power_state(s.compute, RG, "dealloc-1") == "deallocated"  # never deallocated -> stopped
    running = vms.begin_deallocate(RG, "run-1")
    assert refused(vms.begin_power_off, RG, "run-1", skip_shutdown=True).message == msg.format("run-1")
    running.result(timeout=10)  # the deallocate was not disturbed
    assert running.status() == "Succeeded"
    assert power_state(s.compute, RG, "run-1") == "deallocated"


# --------------------------------------------------------------------------- 3. Canceled LROs (fault)
@pytest.mark.parametrize("error", ["OperationPreempted", "canceled"])
def test_fault_makes_an_lro_end_canceled(make_sim: Any, error: str) -> None:
    s = Sim(make_sim, fleet())
    s.h.faults({"vm": "stop-1", "operation": "start", "error": error})
    cid = str(uuid.uuid4())
    seen, hook = recorder()
    poller = s.compute.virtual_machines.begin_start(RG, "stop-1", raw_response_hook=hook, **cid_kw(cid))
    with pytest.raises(HttpResponseError) as info:
        poller.result(timeout=10)
    assert info.value.error.code == "OperationPreempted" and info.value.error.message == PREEMPTED
    assert poller.status() == "Canceled"
    assert power_state(s.compute, RG, "stop-1") == "stopped"
    assert s.compute.virtual_machines.get(RG, "stop-1").provisioning_state == "Succeeded"
    doc = s.raw("GET", seen[0].headers["Azure-AsyncOperation"])
    assert doc.status_code == 200
    assert doc.json()["status"] == "Canceled" and "endTime" in doc.json()
    assert doc.json()["error"] == {"code": "OperationPreempted", "message": PREEMPTED}
    monitor_url = s.raw("GET", seen[0].headers["Location"])
    assert monitor_url.status_code == 500 and monitor_url.json()["error"]["code"] == "OperationPreempted"
    got = s.events(cid)
    assert [e.status.value for e in got] == ["Failed", "Accepted", "Started"]
    assert json.loads(got[0].properties["statusMessage"]) == {
        "status": "Canceled", "error": {"code": "OperationPreempted", "message": PREEMPTED}}


# --------------------------------------------------------------------------- 4. a second operation on a busy VM
@pytest.mark.assumption("which pairs of power actions preempt and which get a state 409 is not established; "
                        "preemption is the only outcome on record for a newer operation")
def test_busy_vm_preempts_the_running_operation(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro={"powerOff": 0.8, "start": 0.2}))
    vms = s.compute.virtual_machines
    first_cid, second_cid = str(uuid.uuid4()), str(uuid.uuid4())
    seen, hook = recorder()
    t0 = time.monotonic()
    first = vms.begin_power_off(RG, "run-2", raw_response_hook=hook, **cid_kw(first_cid))
    second = vms.begin_start(RG, "run-2", **cid_kw(second_cid))  # accepted: 202, a new LRO
    with pytest.raises(HttpResponseError) as info:
        first.result(timeout=10)
    assert info.value.error.code == "OperationPreempted" and info.value.error.message == PREEMPTED
    assert first.status() == "Canceled"
    second.result(timeout=10)
    assert second.status() == "Succeeded"
    assert power_state(s.compute, RG, "run-2") == "running"
    # the preempted powerOff never applies its end state, also after its own end time
    poll_until(lambda: time.monotonic() - t0 > 1.0, timeout=5)
    assert power_state(s.compute, RG, "run-2") == "running"
    assert s.raw("GET", seen[0].headers["Location"]).status_code == 500
    preempted = s.events(first_cid)
    assert [e.status.value for e in preempted] == ["Failed", "Accepted", "Started"]
    assert preempted[0].level == "Error" and "OperationPreempted" in preempted[0].properties["statusMessage"]
    assert [e.status.value for e in s.events(second_cid)] == ["Succeeded", "Accepted", "Started"]


@pytest.mark.assumption("the refuse mode's 409 text for a busy VM is invented (no capture of such a 409)")
def test_busy_vm_refuse_option_per_pair(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(platform={"busy_vm": {"default": "refuse", "deallocate over powerOff": "preempt"}},
                            lro={"powerOff": 5}))
    vms = s.compute.virtual_machines
    first = vms.begin_power_off(RG, "run-1", polling=False)
    err = refused(vms.begin_start, RG, "run-1")
    assert err.message == "Operation 'start' is not allowed on VM 'run-1' since the VM is busy with operation 'powerOff'."
    assert power_state(s.compute, RG, "run-1") == "stopping"
    vms.begin_deallocate(RG, "run-1").result(timeout=10)  # this pair preempts
    assert power_state(s.compute, RG, "run-1") == "deallocated"
    assert s.h.stats()["operations_started"] == 2 and first.done()


# --------------------------------------------------------------------------- 5. someone else acts: /_sim/act
@pytest.mark.assumption("the other principal's deallocate preempts the running start (busy-VM default)")
def test_sim_act_runs_as_another_principal(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro={"start": 0.8}))
    mine = s.compute.virtual_machines.begin_start(RG, "stop-1")
    r = s.act(vm="stop-1", action="deallocate", caller="ops-bot@contoso.example")
    assert r.status_code == 202, r.text
    ids = r.json()
    assert set(ids) == {"operationId", "correlationId"}
    with pytest.raises(HttpResponseError) as info:
        mine.result(timeout=10)
    assert info.value.error.code == "OperationPreempted"
    poll_until(lambda: power_state(s.compute, RG, "stop-1") == "deallocated", timeout=10)
    theirs = s.events(ids["correlationId"])
    assert [e.status.value for e in theirs] == ["Succeeded", "Accepted", "Started"]
    assert {e.caller for e in theirs} == {"ops-bot@contoso.example"}
    assert {e.operation_id for e in theirs} == {ids["operationId"]}
    # the same refusals as an ARM POST, answered with their status and ARM body
    r = s.act(vm="stop-1", resource_group=RG, subscription=SUB_A, action="powerOff")
    assert r.status_code == 409 and r.json()["error"]["code"] == "OperationNotAllowed"
    assert [e.caller for e in s.events() if e.status.value == "Failed"][0] == "someone-else@contoso.example"
    assert s.act(vm="ghost", action="start").status_code == 404
    assert s.act(vm="run-1", resource_group="rg-nope", action="start").json()["error"]["code"] == "ResourceGroupNotFound"
    bad = s.act(vm="run-1", action="explode")
    assert bad.status_code == 400 and "powerOff" in bad.json()["error"]["message"]


# --------------------------------------------------------------------------- 6. HEAD
def test_head_answers_existence_checks(make_sim: Any) -> None:
    s = Sim(make_sim, fleet())
    groups = s.resource.resource_groups
    assert groups.check_existence(RG) is True
    assert groups.check_existence("RG-Q") is True
    assert groups.check_existence("rg-nope") is False
    other = ResourceManagementClient(s.cred, str(uuid.uuid4()), base_url=s.h.url)
    assert other.resource_groups.check_existence(RG) is False
    vm = f"/subscriptions/{SUB_A}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"
    found = s.raw("HEAD", f"{vm}/run-1?api-version={API}")
    assert found.status_code == 204 and found.content == b""
    missing = s.raw("HEAD", f"{vm}/ghost?api-version={API}")
    assert missing.status_code == 404 and missing.content == b""
    anonymous = s.raw("HEAD", f"/subscriptions/{SUB_A}/resourcegroups/{RG}?api-version=2025-04-01", token=False)
    assert anonymous.status_code == 401 and anonymous.content == b""
    st = s.h.stats()
    assert st["writes"] == 0
    assert st["reads"] == 7 and st["by_operation"]["resourceGroups.get"] == 5


# --------------------------------------------------------------------------- 7. /resources and avsets
def test_generic_resource_lists_filters_and_paging(make_sim: Any) -> None:
    s = Sim(make_sim, fleet())
    res = s.resource.resources
    every = list(res.list())
    assert len(every) == 1 + 7 + 7 + 1 + 1  # avset, VMs and NICs of rg-p; VM and NIC of rg-q
    assert s.h.stats()["by_operation"]["resources.list"] == 5  # pages of 4
    by_name = {r.name: r for r in every}
    assert by_name["as-p"].type == "Microsoft.Compute/availabilitySets" and by_name["as-p"].sku.name == "Aligned"
    assert by_name["run-1"].as_dict().get("zones") == ["1"] and by_name["run-1"].tags == {"env": "dev"}
    assert by_name["run-1-nic"].type == "Microsoft.Network/networkInterfaces"
    assert by_name["q-1"].id.endswith("/resourceGroups/rg-q/providers/Microsoft.Compute/virtualMachines/q-1")

    vms = list(res.list(filter="resourceType eq 'microsoft.compute/VIRTUALMACHINES'"))
    assert sorted(v.name for v in vms) == ["blind-1", "dealloc-1", "q-1", "run-1", "run-2", "stop-1", "web-1", "web-2"]
    assert [r.name for r in res.list(filter="name eq 'RUN-2'")] == ["run-2"]
    tagged = list(res.list(filter="tagName eq 'env' and tagValue eq 'prod'"))
    assert sorted(r.name for r in tagged) == ["q-1", "web-1", "web-2"]
    assert all(r.tags is None for r in tagged)  # ARM drops the tags when filtering on them
    assert sorted(r.name for r in res.list(filter="resourceGroup eq 'RG-Q'")) == ["q-1", "q-1-nic"]
    assert sorted(r.name for r in res.list_by_resource_group(RG_Q)) == ["q-1", "q-1-nic"]
    assert len(list(res.list(top=3))) == 3
    expanded = next(iter(res.list(filter="name eq 'run-1'", expand="createdTime,provisioningState")))
    assert expanded.created_time is not None and expanded.provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as info:
        list(res.list(filter="substringof('web', name)"))
    assert info.value.status_code == 400 and info.value.error.code == "InvalidFilterInQueryString"

    sets = list(s.compute.availability_sets.list_by_subscription())
    assert [a.name for a in sets] == ["as-p"]
    assert sets[0].platform_fault_domain_count == 2 and len(sets[0].virtual_machines) == 2


# --------------------------------------------------------------------------- 8. identity
def test_managed_identity_caller_is_its_object_id(make_sim: Any) -> None:
    data = fleet()
    del data["identity"]  # a managed identity: no upn in its token
    s = Sim(make_sim, data)
    token = s.cred.get_token(SCOPE).token
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert "upn" not in claims
    cid = str(uuid.uuid4())
    s.compute.virtual_machines.begin_power_off(RG, "run-1", **cid_kw(cid)).result(timeout=10)
    got = s.events(cid)
    assert len(got) == 3 and {e.caller for e in got} == {claims["oid"]}
    assert uuid.UUID(claims["oid"])


# --------------------------------------------------------------------------- 9. timing
@pytest.mark.assumption("a 2022 recording shows no Retry-After from Compute, a 2023 one shows Retry-After: 10 on some "
                        "kick-offs; none is the stricter default")
def test_no_retry_after_by_default(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro_retry_after=None))
    seen, hook = recorder()
    poller = s.compute.virtual_machines.begin_restart(RG, "run-1", raw_response_hook=hook, polling_interval=0.05)
    poller.result(timeout=10)
    kickoff, polls = seen[0], seen[1:]
    assert kickoff.status_code == 202 and "Azure-AsyncOperation" in kickoff.headers
    assert polls and any(p.json()["status"] == "InProgress" for p in polls[:-1])
    assert all("Retry-After" not in r.headers for r in seen)
    assert s.raw("GET", kickoff.headers["Location"]).headers.get("Retry-After") is None


def _durations(s: Sim, names: list[str]) -> list[float]:
    """Each name's powerOff duration from its status document (endTime - startTime)."""
    out = []
    for name in names:
        seen, hook = recorder()
        s.compute.virtual_machines.begin_power_off(RG, name, raw_response_hook=hook).result(timeout=10)
        doc = next(r.json() for r in reversed(seen) if r.request.url == seen[0].headers["Azure-AsyncOperation"])
        out.append((datetime.fromisoformat(doc["endTime"]) - datetime.fromisoformat(doc["startTime"])).total_seconds())
    return out


@pytest.mark.assumption("the spread of real durations (jitter 0.25 by default) is not established")
def test_operation_durations_jitter_and_seed(make_sim: Any) -> None:
    names = ["run-1", "run-2", "web-1", "web-2"]
    exact = _durations(Sim(make_sim, fleet(lro={"powerOff": 1.0}), time_scale=10), names)
    assert exact == [pytest.approx(0.1, abs=2e-6)] * 4  # timestamps carry microseconds
    one = _durations(Sim(make_sim, fleet(lro={"powerOff": 1.0}, jitter=0.5, seed=7), time_scale=10), names)
    two = _durations(Sim(make_sim, fleet(lro={"powerOff": 1.0}, jitter=0.5, seed=7), time_scale=10), names)
    assert one == [pytest.approx(d, abs=2e-6) for d in two]  # reproducible with time.seed
    assert all(0.05 - 2e-6 <= d <= 0.15 + 2e-6 for d in one) and len(set(one)) == 4


@pytest.mark.assumption("Activity Log events of one operation becoming visible out of order follows from per-event "
                        "ingestion delays; no capture shows it")
def test_activity_log_events_can_become_visible_out_of_order(make_sim: Any) -> None:
    s = Sim(make_sim, fleet(lro={"powerOff": 0.05}, activity_log_delay_seconds=0.4, jitter=0.9, seed=3))
    cids = {}
    for name in ("run-1", "run-2", "web-1", "web-2"):
        cids[name] = str(uuid.uuid4())
        s.compute.virtual_machines.begin_power_off(RG, name, **cid_kw(cids[name])).result(timeout=10)
    end_before_start: set[str] = set()

    def all_visible() -> bool:
        seen: dict[str, set[str]] = {}
        for e in s.events():
            seen.setdefault(e.correlation_id, set()).add(e.status.value)
        end_before_start.update(c for c, st in seen.items() if "Succeeded" in st and "Started" not in st)
        return len(seen) == 4 and all(len(st) == 3 for st in seen.values())

    poll_until(all_visible, timeout=10)
    assert end_before_start, "no operation's end event became visible before its start event"
    for cid in end_before_start:
        got = {e.status.value: e for e in s.events(cid)}
        assert got["Succeeded"].submission_timestamp < got["Started"].submission_timestamp
        assert got["Succeeded"].event_timestamp > got["Started"].event_timestamp  # newest first stays true


@pytest.mark.assumption("whether Azure's instance view can lag an accepted operation is not established")
def test_an_operation_can_show_on_the_vm_only_after_a_lag(make_sim: Any) -> None:
    """platform.op_visible_after_seconds: reads show the VM as it was until the lag has passed."""
    s = Sim(make_sim, fleet({"op_visible_after_seconds": 0.3}, lro={"restart": 2}))
    s.compute.virtual_machines.begin_restart(RG, "run-1", polling=False)
    view = s.compute.virtual_machines.instance_view(RG, "run-1")
    assert [st.code for st in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    poll_until(lambda: power_state(s.compute, RG, "run-1") == "stopping", timeout=10)
    assert s.h.stats()["operations_started"] == 1
