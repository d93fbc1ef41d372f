"""Throttling, fault injection and the control endpoints of the simulator.

Raw HTTPS (requests, with the simulator's CA and a real bearer token from DefaultAzureCredential)
is used where the SDK's own retry policy would hide the answer; the SDK is used to show how a real
client experiences the same answers. Nothing is mocked or patched.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ServiceResponseError

from conftest import BASIC, SUB_A, poll_until, power_state

API = "2026-04-01"
SCOPE = "https://management.azure.com/.default"
RESOURCE_HEADER = re.compile(r"^Microsoft\.Compute/\w+;\d+(,Microsoft\.Compute/\w+;\d+)*$")


# --------------------------------------------------------------------------- helpers
def basic_fleet(**top: Any) -> dict[str, Any]:
    data = copy.deepcopy(yaml.safe_load(BASIC.read_text(encoding="utf-8")))
    data.update(top)
    return data


def compute_for(handle: Any) -> Any:
    """A Compute client for `handle`, with a credential created after its environment is set."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(DefaultAzureCredential(), SUB_A, base_url=handle.url)


class Raw:
    """Plain HTTPS to the simulator with a bearer token: no SDK retry policy in the way."""

    def __init__(self, handle: Any) -> None:
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token(SCOPE).token
        self.url = handle.url
        self.s = requests.Session()
        self.s.verify = str(handle.sim.ca_path)
        self.s.headers["Authorization"] = f"Bearer {token}"

    def vm_path(self, rg: str, vm: str, tail: str = "") -> str:
        return (f"{self.url}/subscriptions/{SUB_A}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                f"virtualMachines/{vm}{tail}?api-version={API}")

    def post(self, vm: str, action: str = "powerOff", rg: str = "rg-app") -> requests.Response:
        return self.s.post(self.vm_path(rg, vm, "/" + action), timeout=10)

    def instance_view(self, vm: str, rg: str = "rg-app") -> requests.Response:
        return self.s.get(self.vm_path(rg, vm, "/instanceView"), timeout=10)

    def get(self, url: str) -> requests.Response:
        return self.s.get(url, timeout=10)


def one_header(resp: requests.Response, name: str) -> str:
    """The header's value, asserting it was sent exactly once (not one header per policy)."""
    values = resp.raw.headers.getlist(name)
    assert len(values) == 1, f"{name}: {values!r}"
    return values[0]


def retry_after(resp: requests.Response) -> int:
    value = one_header(resp, "Retry-After")
    assert value.isdigit(), value
    return int(value)


# --------------------------------------------------------------------------- ARM throttling
def test_arm_write_bucket_throttles_the_fourth_rapid_post_and_refills(make_sim: Any) -> None:
    handle = make_sim(basic_fleet(throttling={"arm": {"writes": {"capacity": 3, "per_second": 0.5}}}))
    raw = Raw(handle)

    iv = raw.instance_view("app-06")
    assert iv.status_code == 200
    assert int(one_header(iv, "x-ms-ratelimit-remaining-subscription-reads")) == 249
    res = one_header(iv, "x-ms-ratelimit-remaining-resource")
    assert RESOURCE_HEADER.match(res) and "Microsoft.Compute/LowCostGet3Min;" in res, res

    remaining = []
    for vm in ("app-01", "app-02", "app-03"):
        r = raw.post(vm)
        assert r.status_code == 202, r.text
        remaining.append(int(one_header(r, "x-ms-ratelimit-remaining-subscription-writes")))
        res = one_header(r, "x-ms-ratelimit-remaining-resource")
        assert RESOURCE_HEADER.match(res) and "Microsoft.Compute/UpdateVM3Min;" in res, res
        assert "x-ms-ratelimit-remaining-subscription-reads" not in r.headers
    assert remaining == [2, 1, 0]

    r = raw.post("app-04")
    assert r.status_code == 429
    assert retry_after(r) >= 1
    err = r.json()["error"]
    assert err["code"] == "SubscriptionRequestsThrottled"
    assert "aka.ms/arm-throttling" in err["message"]
    assert power_state(compute_for(handle), "rg-app", "app-04") == "running"  # refused before Compute saw it

    st = handle.stats()
    assert st["throttled"] == 1
    assert st["throttled_by_bucket"] == {"SubscriptionWrites": 1}
    assert st["by_status"]["429"] == 1

    # tokens come back at 0.5/s: poll (no fixed sleep) until the write passes again
    ok = poll_until(lambda: (lambda resp: resp if resp.status_code == 202 else None)(raw.post("app-04")),
                    timeout=15, interval=0.25)
    assert int(one_header(ok, "x-ms-ratelimit-remaining-subscription-writes")) == 0
    assert handle.stats()["throttled_by_bucket"]["SubscriptionWrites"] >= 1


def test_sdk_honours_retry_after_on_throttled_writes(make_sim: Any) -> None:
    handle = make_sim(basic_fleet(throttling={"arm": {"writes": {"capacity": 1, "per_second": 1}}}))
    raw = Raw(handle)
    compute = compute_for(handle)
    assert raw.post("app-01").status_code == 202  # takes the only token

    # without retries the 429 surfaces as an ARM error
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.begin_power_off("rg-app", "app-02", retry_total=0)
    assert info.value.status_code == 429
    assert info.value.error.code == "SubscriptionRequestsThrottled"

    # with the SDK's default retry policy it waits Retry-After and gets through
    compute.virtual_machines.begin_power_off("rg-app", "app-02").result()
    assert power_state(compute, "rg-app", "app-02") == "stopped"
    st = handle.stats()
    assert st["throttled_by_bucket"]["SubscriptionWrites"] >= 2
    assert st["by_status"]["429"] == st["throttled"] >= 2
    assert st["by_status"]["202"] == 2
    assert st["operations_started"] == 2


@pytest.mark.assumption("VM lists counting against a HighCostGet policy is an assumption (numbers not published)")
def test_compute_policy_override_throttles_instance_views(make_sim: Any) -> None:
    handle = make_sim(basic_fleet(throttling={"compute": {"LowCostGet": {"subscription": {"capacity": 2, "per_minute": 60}}}}))
    raw = Raw(handle)
    first = raw.instance_view("app-01")
    second = raw.instance_view("app-02")
    assert first.status_code == second.status_code == 200
    assert "Microsoft.Compute/LowCostGet3Min;1" in one_header(first, "x-ms-ratelimit-remaining-resource").split(",")
    assert "Microsoft.Compute/LowCostGet3Min;0" in one_header(second, "x-ms-ratelimit-remaining-resource").split(",")

    r = raw.instance_view("app-03")
    assert r.status_code == 429
    assert retry_after(r) >= 1
    err = r.json()["error"]
    assert err["code"] == "OperationNotAllowed"
    assert err["details"][0]["code"] == "TooManyRequests"
    assert err["details"][0]["target"] == "LowCostGet3Min"

    st = handle.stats()
    assert st["throttled"] == 1 and st["throttled_by_bucket"] == {"LowCostGet3Min": 1}
    # list calls are HighCostGet and are not affected
    lst = raw.get(f"{handle.url}/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines?api-version={API}")
    assert lst.status_code == 200
    assert "HighCostGet3Min" in one_header(lst, "x-ms-ratelimit-remaining-resource")
    # refill at 1/s lets the next instance view through
    poll_until(lambda: raw.instance_view("app-03").status_code == 200, timeout=10, interval=0.2)


def test_time_scale_speeds_up_refill(make_sim: Any) -> None:
    # nominally 0.1 token/s (10 s per token); at time_scale=10 a token comes back every ~0.1 s
    handle = make_sim(basic_fleet(throttling={"arm": {"writes": {"capacity": 3, "per_second": 0.1}}}), time_scale=10)
    raw = Raw(handle)
    vms = iter(["app-01", "app-02", "app-03", "app-04", "app-05", "app-06", "closed-01"])
    first_429 = None
    for vm in vms:
        r = raw.post(vm)
        if r.status_code == 429:
            first_429 = (vm, r)
            break
        assert r.status_code == 202
    assert first_429 is not None, "the write bucket never ran dry"
    vm, r = first_429
    assert retry_after(r) <= 2  # would be ~10 s at time_scale=1
    poll_until(lambda: raw.post(vm).status_code == 202, timeout=5, interval=0.05)


def test_throttling_disabled_never_throttles(make_sim: Any) -> None:
    handle = make_sim(basic_fleet(throttling={
        "enabled": False,
        "arm": {"writes": {"capacity": 1, "per_second": 0.01}},
        "compute": {"LowCostGet": {"subscription": {"capacity": 1, "per_minute": 1}}},
    }))
    raw = Raw(handle)
    statuses = [raw.post(vm).status_code for vm in ("app-01", "app-02", "app-03", "app-04", "app-05")]
    statuses += [raw.instance_view("app-06").status_code for _ in range(15)]
    assert 429 not in statuses and set(statuses) == {200, 202}
    st = handle.stats()
    assert st["throttled"] == 0 and st["throttled_by_bucket"] == {}


# --------------------------------------------------------------------------- faults
def test_fleet_file_429_fault_is_retried_by_the_sdk_and_restored_by_reset(make_sim: Any, tmp_path: Path) -> None:
    fleet = basic_fleet(faults=[{"vm": "app-01", "operation": "get", "error": 429, "times": 2}])
    path = tmp_path / "faulty.yaml"
    path.write_text(yaml.safe_dump(fleet), encoding="utf-8")
    handle = make_sim(path)
    compute = compute_for(handle)

    listed = handle.control("GET", "/_sim/faults")["faults"]
    assert listed == [{"vm": "app-01", "operation": "get", "error": "429", "remaining": 2, "fired": 0}]

    vm = compute.virtual_machines.get("rg-app", "app-01")  # two 429s with Retry-After, then 200
    assert vm.name == "app-01"
    st = handle.stats()
    assert st["faulted"] == 2
    assert st["by_operation"]["virtualMachines.get"] == 3
    assert st["by_status"] == {"200": 1, "429": 2}
    assert st["throttled"] == 0  # injected, not the token buckets
    assert handle.control("GET", "/_sim/faults")["faults"][0]["remaining"] == 0

    # the fault is used up; other VMs were never affected
    compute.virtual_machines.get("rg-app", "app-01")
    compute.virtual_machines.get("rg-app", "app-02")
    assert handle.stats()["faulted"] == 2

    # a full reset re-arms the fleet file's faults
    handle.reset()
    assert handle.control("GET", "/_sim/faults")["faults"][0]["remaining"] == 2
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.get("rg-app", "app-01", retry_total=0)
    assert info.value.status_code == 429
    assert info.value.response.headers["Retry-After"] == "1"


def test_500_and_503_faults(sim: Any, compute: Any) -> None:
    # once: the SDK retries a GET on 500 and a POST on 503, so the caller sees success
    sim.faults({"vm": "app-02", "operation": "instanceView", "error": 500, "times": 1},
               {"vm": "app-02", "operation": "powerOff", "error": 503, "times": 1})
    assert power_state(compute, "rg-app", "app-02") == "running"
    compute.virtual_machines.begin_power_off("rg-app", "app-02").result()
    st = sim.stats()
    assert st["faulted"] == 2
    assert st["by_status"]["500"] == 1 and st["by_status"]["503"] == 1
    assert st["by_operation"]["virtualMachines.powerOff"] == 2

    # always, with retries off: the ARM error surfaces with the right code
    sim.faults({"vm": "app-03", "operation": "instanceView", "error": 500, "times": "always"},
               {"vm": "app-03", "operation": "restart", "error": 503, "times": "always"})
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.instance_view("rg-app", "app-03", retry_total=0)
    assert info.value.status_code == 500 and info.value.error.code == "InternalServerError"
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.begin_restart("rg-app", "app-03", retry_total=0)
    assert info.value.status_code == 503 and info.value.error.code == "ServiceUnavailable"
    assert sim.stats()["operations_started"] == 1  # only the app-02 power-off


def test_409_fault_is_resource_exists_error(sim: Any, compute: Any) -> None:
    sim.faults({"vm": "app-04", "operation": "deallocate", "error": 409})
    with pytest.raises(ResourceExistsError) as info:
        compute.virtual_machines.begin_deallocate("rg-app", "app-04")
    assert info.value.status_code == 409 and info.value.error.code == "Conflict"
    st = sim.stats()
    assert st["faulted"] == 1 and st["by_operation"]["virtualMachines.deallocate"] == 1  # no retry
    assert power_state(compute, "rg-app", "app-04") == "running"
    # used up: the next one goes through
    compute.virtual_machines.begin_deallocate("rg-app", "app-04").result()
    assert power_state(compute, "rg-app", "app-04") == "deallocated"


def test_lro_fault_ends_failed_with_allocation_failed(sim: Any, compute: Any) -> None:
    sim.faults({"vm": "dealloc-01", "operation": "start", "error": "AllocationFailed"})
    poller = compute.virtual_machines.begin_start("rg-misc", "dealloc-01")
    with pytest.raises(HttpResponseError) as info:
        poller.result()
    assert info.value.error.code == "AllocationFailed"
    assert "Allocation failed" in info.value.error.message
    assert poller.status().lower() == "failed"

    view = compute.virtual_machines.instance_view("rg-misc", "dealloc-01")
    codes = [s.code for s in view.statuses]
    assert "ProvisioningState/failed/AllocationFailed" in codes and "PowerState/deallocated" in codes
    assert compute.virtual_machines.get("rg-misc", "dealloc-01").provisioning_state == "Failed"

    compute.virtual_machines.begin_start("rg-misc", "dealloc-01").result()
    assert power_state(compute, "rg-misc", "dealloc-01") == "running"
    assert compute.virtual_machines.get("rg-misc", "dealloc-01").provisioning_state == "Succeeded"


def test_slow_fault_makes_an_lro_take_longer(sim: Any, compute: Any) -> None:
    sim.faults({"vm": "app-05", "operation": "powerOff", "error": "slow", "delay_seconds": 1})
    seen: dict[str, str] = {}

    def grab(response: Any) -> None:
        aao = response.http_response.headers.get("Azure-AsyncOperation")
        if aao and response.http_request.method == "POST":
            seen["aao"] = aao

    slow = compute.virtual_machines.begin_power_off("rg-app", "app-05", raw_response_hook=grab)
    normal = compute.virtual_machines.begin_power_off("rg-app", "app-06")
    normal.result()
    assert power_state(compute, "rg-app", "app-06") == "stopped"
    # the normal one is done; the slow one, started first, is still in its transitional state
    assert not slow.done()
    assert power_state(compute, "rg-app", "app-05") == "stopping"
    assert compute.virtual_machines.get("rg-app", "app-05").provisioning_state == "Updating"
    slow.result()
    assert power_state(compute, "rg-app", "app-05") == "stopped"

    doc = Raw(sim).get(seen["aao"]).json()
    assert doc["status"] == "Succeeded"
    took = (datetime.fromisoformat(doc["endTime"]) - datetime.fromisoformat(doc["startTime"])).total_seconds()
    assert took >= 1.2  # 0.3 s normal + 1 s injected
    assert sim.stats()["faulted"] == 1


def test_dropped_connection_on_get(sim: Any, compute: Any) -> None:
    # once: azure-core treats the reset as ServiceResponseError and retries the idempotent GET
    sim.faults({"vm": "app-01", "operation": "get", "error": "drop"})
    assert compute.virtual_machines.get("rg-app", "app-01").name == "app-01"
    st = sim.stats()
    assert st["faulted"] == 1
    assert st["by_operation"]["virtualMachines.get"] == 2
    assert st["by_status"]["0"] == 1 and st["by_status"]["200"] == 1

    # always, retries off: the caller sees the connection error
    sim.faults({"vm": "app-02", "operation": "get", "error": "drop", "times": "always"})
    with pytest.raises(ServiceResponseError):
        compute.virtual_machines.get("rg-app", "app-02", retry_total=0)
    assert sim.stats()["faulted"] == 2


def test_always_faults_glob_matching_listing_and_clearing(sim: Any, compute: Any) -> None:
    listed = sim.faults({"vm": "app-0[12]", "operation": "virtualMachines.instanceView", "error": 503, "times": "always"})
    assert listed["faults"][0]["remaining"] == "always"
    for _ in range(2):
        for vm in ("app-01", "app-02"):
            with pytest.raises(HttpResponseError) as info:
                compute.virtual_machines.instance_view("rg-app", vm, retry_total=0)
            assert info.value.status_code == 503
    assert power_state(compute, "rg-app", "app-03") == "running"  # glob does not match
    compute.virtual_machines.get("rg-app", "app-01")  # other operations on a matching VM are fine

    listed = sim.control("GET", "/_sim/faults")["faults"]
    assert listed == [{"vm": "app-0[12]", "operation": "virtualMachines.instanceView", "error": "503",
                       "remaining": "always", "fired": 4}]
    assert sim.stats()["faulted"] == 4

    assert sim.control("DELETE", "/_sim/faults") == {"faults": []}
    assert sim.control("GET", "/_sim/faults") == {"faults": []}
    assert power_state(compute, "rg-app", "app-01") == "running"
    assert sim.stats()["faulted"] == 4


def test_bad_fault_rule_is_400(sim: Any) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as info:
        sim.faults({"vm": "app-01", "times": 0})
    assert info.value.code == 400
    assert sim.control("GET", "/_sim/faults") == {"faults": []}


# --------------------------------------------------------------------------- reset and stats
def test_reset_restores_fleet_and_zeroes_stats(sim: Any, compute: Any) -> None:
    compute.virtual_machines.begin_power_off("rg-app", "app-01").result()
    assert power_state(compute, "rg-app", "app-01") == "stopped"
    sim.faults({"vm": "app-02", "operation": "get", "error": 500, "times": "always"})

    # stats only: counters go to zero, the fleet and the faults stay as they are
    sim.reset("stats")
    st = sim.stats()
    assert (st["requests"], st["reads"], st["writes"], st["throttled"], st["faulted"]) == (0, 0, 0, 0, 0)
    assert st["by_operation"] == {} and st["by_status"] == {}
    assert power_state(compute, "rg-app", "app-01") == "stopped"
    assert len(sim.control("GET", "/_sim/faults")["faults"]) == 1

    # everything: the VM is running again, runtime faults are gone, activity log is empty
    sim.reset()
    st = sim.stats()
    assert st["requests"] == 0 and st["by_operation"] == {}
    assert st["operations_started"] == 0 and st["activity_events"] == 0
    assert sim.control("GET", "/_sim/faults") == {"faults": []}
    assert power_state(compute, "rg-app", "app-01") == "running"
    assert compute.virtual_machines.get("rg-app", "app-02").provisioning_state == "Succeeded"


def test_stats_count_reads_and_writes_by_operation(sim: Any, compute: Any) -> None:
    # a --dry-run style pass: only GETs
    vms = list(compute.virtual_machines.list_all())
    assert len(vms) == 14  # pages of 5 -> 3 requests
    compute.virtual_machines.get("rg-app", "app-01", expand="instanceView")
    compute.virtual_machines.instance_view("rg-app", "app-02")
    st = sim.stats()
    assert st["writes"] == 0
    assert st["reads"] == 5
    assert st["by_operation"] == {"identity.token": 1, "virtualMachines.get": 1,
                                  "virtualMachines.instanceView": 1, "virtualMachines.listAll": 3}

    # one real write: counted once as a write; its status polls are reads
    compute.virtual_machines.begin_power_off("rg-app", "app-01").result()
    st = sim.stats()
    assert st["writes"] == 1
    assert st["by_operation"]["virtualMachines.powerOff"] == 1
    assert st["by_operation"]["operations.get"] >= 2
    assert st["reads"] == 5 + st["by_operation"]["operations.get"]
