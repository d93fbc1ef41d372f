"""The simulator's per-VM IMDS (plain HTTP): instance metadata, Scheduled Events and the approval
wait of a user restart, as wire contract §14 describes them. Real HTTP, the simulator time-scaled
(x600: 15 min of notice is 1.5 s)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any, Callable

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient

from conftest import SUB_A, SimHandle, poll_until
from vmctl.simulator import FleetError, load_fleet

SCALE = 600.0
SE = "/metadata/scheduledevents?api-version=2020-07-01"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS is never proxied


def fleet(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "time": {"lro_seconds": {"restart": 45, "redeploy": 110}, "jitter": 0, "activity_log_delay_seconds": 0,
                 "lro_retry_after": 0.05},
        "subscriptions": [{"id": SUB_A, "resource_groups": [
            {"name": "rg-web", "availability_sets": [{"name": "as-web", "update_domains": 2}],
             "vms": [{"name": "web-{i}", "count": 2, "availability_set": "as-web", "tags": {"app": "web"}},
                     {"name": "spot-1", "priority": "Spot", "zone": "2"}]}]}],
    }
    data.update(extra)
    return data


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Metadata": "true", **(headers or {})})
    try:
        with _OPENER.open(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode()


def events(h: SimHandle, vm: str) -> dict[str, Any]:
    status, doc = call(h.sim.imds_endpoint(vm) + SE)
    assert status == 200, doc
    return doc  # type: ignore[no-any-return]


def flowing(h: SimHandle, vm: str) -> None:
    """Poll until the VM's IMDS passes events (first call, then the flow delay)."""
    events(h, vm)
    poll_until(lambda: h.control("GET", "/_sim/events")["vms"].get(vm, {}).get("flowing"), timeout=10)


def test_instance_metadata_and_imds_guards(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(), time_scale=SCALE)
    base = h.sim.imds_endpoint("web-1")
    status, compute = call(base + "/metadata/instance/compute?api-version=2021-12-13")
    assert status == 200
    assert compute["name"] == "web-1" and compute["resourceGroupName"] == "rg-web"
    assert compute["platformUpdateDomain"] == "0" and compute["zone"] == ""   # strings; missing is ""
    assert compute["tagsList"] == [{"name": "app", "value": "web"}]
    assert compute["resourceId"].endswith("/virtualMachines/web-1")
    assert call(base + "/metadata/instance/compute/name?api-version=2021-12-13&format=text") == (200, "web-1")
    assert call(base + "/metadata/instance/compute/name?api-version=2021-12-13")[0] == 400   # leaf needs format=text
    assert call(h.sim.imds_endpoint("spot-1") + "/metadata/instance/compute/priority?api-version=2021-12-13"
                "&format=text") == (200, "Spot")
    # the long form of the address
    assert call(h.sim.imds_endpoint("web-2", "rg-web") + "/metadata/instance/compute/name?api-version=2021-12-13"
                "&format=text") == (200, "web-2")
    # IMDS's guards
    assert call(base + SE, headers={"Metadata": "false"})[0] == 400
    assert call(base + SE, headers={"X-Forwarded-For": "10.0.0.1"})[0] == 400
    status, body = call(base + "/metadata/scheduledevents")
    assert status == 400 and "api-version is invalid" in body["error"] and "newest-versions" in body
    assert call(base + SE + "&api-version=2020-07-01")[0] == 400      # duplicate query keys
    assert call(base + SE, method="PUT", body={})[0] == 405
    assert call(h.sim.imds_url + "/vm/nope" + SE)[0] == 404
    assert call(base + "/metadata/nothing?api-version=2021-12-13")[0] == 404


def test_fleet_freeze_for_two_vms_one_approval_releases_both(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(scheduled_events=[{"type": "Freeze", "vms": ["web-1", "web-2"], "at": "0s"}],
                       imds={"started_seconds": 120}), time_scale=SCALE)
    first = events(h, "web-1")
    assert first == {"DocumentIncarnation": 1, "Events": []}   # events flow only after the flow delay
    flowing(h, "web-1")
    flowing(h, "web-2")
    doc = events(h, "web-1")
    assert doc["DocumentIncarnation"] == 2
    (ev,) = doc["Events"]
    assert ev["EventType"] == "Freeze" and ev["EventStatus"] == "Scheduled" and ev["EventSource"] == "Platform"
    assert ev["Resources"] == ["web-1", "web-2"] and ev["DurationInSeconds"] == 5
    assert ev["NotBefore"].endswith(" GMT")                      # RFC 1123
    assert events(h, "web-1")["DocumentIncarnation"] == 2        # same content, same incarnation
    assert call(h.sim.imds_endpoint("web-1") + SE, "POST", {"StartRequests": [{"EventId": ev["EventId"]}]})[0] == 200
    poll_until(lambda: events(h, "web-2")["Events"][0]["EventStatus"] == "Started", timeout=10)  # every VM in Resources
    started = events(h, "web-2")["Events"][0]
    assert started["NotBefore"] == ""
    (rec,) = h.control("GET", "/_sim/events")["events"]          # started "when possible": 15 s after the approval
    approved, began = (datetime.fromisoformat(rec[k]).timestamp() for k in ("approvedAt", "startedAt"))
    assert began - approved == pytest.approx(15 / SCALE, abs=0.002)
    assert started["EventId"] == ev["EventId"]
    # an unknown id or a malformed body is 400 (approving the started event: the next test)
    assert call(h.sim.imds_endpoint("web-2") + SE, "POST", {"StartRequests": [{"EventId": "nope"}]})[0] == 400
    assert call(h.sim.imds_endpoint("web-2") + SE, "POST", {"Start": []})[0] == 400
    # Started -> gone (imds.started_seconds), with a new incarnation
    gone = poll_until(lambda: (d := events(h, "web-1"))["Events"] == [] and d, timeout=10)
    assert gone["DocumentIncarnation"] > 3
    stats = h.stats()["scheduled_events"]
    assert (stats["created"], stats["approved"], stats["expired"]) == (1, 1, 0)
    (record,) = h.control("GET", "/_sim/events")["events"]
    assert record["approvedBy"] == "web-1" and record["endedAt"] and not record["expired"]


def test_user_restart_waits_for_approval_or_not_before(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(), time_scale=SCALE)
    compute = ComputeManagementClient(DefaultAzureCredential(), SUB_A, base_url=h.url)
    backend = h.sim.backend
    # spot-1's IMDS was never called: its restart is not held
    quick = compute.virtual_machines.begin_restart("rg-web", "spot-1", polling_interval=0.05)
    quick.result()
    assert h.control("GET", "/_sim/events")["events"] == []
    # web-1 listens: its restart becomes a User Reboot event and waits
    flowing(h, "web-1")
    flowing(h, "web-2")
    poller = compute.virtual_machines.begin_restart("rg-web", "web-1", polling_interval=0.05)
    (ev,) = events(h, "web-1")["Events"]
    assert (ev["EventType"], ev["EventSource"], ev["DurationInSeconds"]) == ("Reboot", "User", -1)
    assert ev["Description"] == "Virtual machine is going to be restarted as requested by authorized user."
    assert backend.find_vm("web-1").op is not None and not poller.done()
    assert call(h.sim.imds_endpoint("web-1") + SE, "POST", {"StartRequests": [{"EventId": ev["EventId"]}]})[0] == 200
    poller.result()                                               # completes: the reboot (45 s / 600) after approval
    (record,) = h.control("GET", "/_sim/events")["events"]
    assert record["operation"] == "restart" and record["approvedAt"] and record["secondsSavedVsNotBefore"] > 1
    # web-2 never approves: the redeploy waits for NotBefore (10 min simulated), then runs
    poller = compute.virtual_machines.begin_redeploy("rg-web", "web-2", polling_interval=0.05)
    (ev2,) = [e for e in events(h, "web-2")["Events"] if e["EventType"] == "Redeploy"]   # web-1's may still show
    assert (ev2["EventType"], ev2["EventSource"]) == ("Redeploy", "User")
    poller.result()
    stats = h.stats()["scheduled_events"]
    assert (stats["created"], stats["approved"], stats["expired"]) == (2, 1, 1)
    late = [e for e in h.control("GET", "/_sim/events")["events"] if e["eventType"] == "Redeploy"][0]
    assert late["expired"] and late["startedAt"] >= late["notBefore"]


@pytest.mark.assumption("IMDS's answer to approving an event that has already Started is not established "
                        "(wire §14.2); the default refuses it")
def test_approving_a_started_event_is_refused(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(scheduled_events=[{"type": "Freeze", "vms": ["web-1", "web-2"], "at": "0s"}],
                       imds={"started_seconds": 120}), time_scale=SCALE)
    flowing(h, "web-1")
    flowing(h, "web-2")
    (ev,) = events(h, "web-1")["Events"]
    approve = {"StartRequests": [{"EventId": ev["EventId"]}]}
    assert call(h.sim.imds_endpoint("web-1") + SE, "POST", approve)[0] == 200
    poll_until(lambda: events(h, "web-2")["Events"][0]["EventStatus"] == "Started", timeout=10)
    assert call(h.sim.imds_endpoint("web-2") + SE, "POST", approve)[0] == 400
    assert h.stats()["scheduled_events"]["approved"] == 1


def test_spot_eviction_from_the_fleet_deallocates(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(scheduled_events=[{"type": "Preempt", "vms": ["spot-1"], "at": "5m"}]), time_scale=SCALE)
    flowing(h, "spot-1")
    ev = poll_until(lambda: events(h, "spot-1")["Events"], timeout=10)[0]
    assert ev["EventType"] == "Preempt"
    poll_until(lambda: not events(h, "spot-1")["Events"] or events(h, "spot-1")["Events"][0]["EventStatus"] == "Started",
               timeout=10)
    assert h.sim.backend.find_vm("spot-1").power == "deallocated"


def test_rate_limit_and_injected_faults(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet(imds={"rate_per_second": 2, "first_call_seconds": 0}), time_scale=1)
    base = h.sim.imds_endpoint("web-1")
    codes = [call(base + SE)[0] for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes[2:]
    h.faults({"operation": "imds.scheduledEvents", "vm": "web-2", "error": "410", "times": 1},
             {"operation": "imds.scheduledEvents", "vm": "web-2", "error": "malformed", "times": 1})
    base2 = h.sim.imds_endpoint("web-2")
    assert call(base2 + SE)[0] == 410
    status, body = call(base2 + SE)
    assert status == 200 and isinstance(body, str)                # not JSON
    poll_until(lambda: call(base2 + SE)[0] == 200, timeout=5)


@pytest.mark.parametrize("bad, message", [
    ([{"type": "Reboots", "vms": ["web-1"]}], "scheduled_events[0].type: expected one of Freeze"),
    ([{"type": "Reboot", "vms": ["nope"]}], "scheduled_events[0].vms: no VM named 'nope'"),
    ([{"type": "Reboot", "vms": ["web-1"], "status": "Started", "notice": "5m"}], "has no notice"),
    ([{"type": "Freeze", "vms": ["web-1"], "at": "-1m"}], "scheduled_events[0].at"),
])
def test_fleet_event_errors_name_their_place(bad: Any, message: str) -> None:
    with pytest.raises(FleetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_fleet(fleet(scheduled_events=bad))
