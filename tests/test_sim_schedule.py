"""The simulator's ComputeSchedule (wire contract §12) through the real azure-mgmt-computeschedule
client: shapes, api-versions, limits, states and the VM operations they run, conflicts and
preemption, cancel, retries per retryPolicy, Blocked, and the ARM write bucket on every POST."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from azure.core.exceptions import HttpResponseError

from conftest import SUB_A, SUB_B, SimHandle, poll_until

LOC = "westeurope"
SCALE = 50.0


def fleet(n: int = 4, faults: list[dict[str, Any]] | None = None, lro: float = 5, **vm: Any) -> dict[str, Any]:
    return {
        "tenant_id": "11111111-0000-0000-0000-000000000000",
        "time": {"lro_seconds": {"deallocate": lro, "start": lro}, "activity_log_delay_seconds": 0, "jitter": 0},
        "subscriptions": [
            {"id": SUB_A, "name": "sub-a", "resource_groups": [
                {"name": "rg-s", "location": LOC, "vms": [{"name": "vm-{i}", "count": n, **vm}]},
                {"name": "rg-east", "location": "eastus", "vms": [{"name": "east-1"}]}]},
            {"id": SUB_B, "name": "sub-b", "resource_groups": [{"name": "rg-b", "location": LOC,
                                                                 "vms": [{"name": "b-1"}]}]}],
        "faults": faults or [],
    }


def vm_id(name: str, rg: str = "rg-s", sub: str = SUB_A) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


@pytest.fixture
def cs(make_sim: Callable[..., SimHandle]) -> Callable[..., tuple[SimHandle, Any]]:
    def _make(f: dict[str, Any] | None = None, api_version: str | None = None) -> tuple[SimHandle, Any]:
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.computeschedule import ComputeScheduleMgmtClient

        sim = make_sim(f or fleet(), time_scale=SCALE)
        kw = {"api_version": api_version} if api_version else {}
        return sim, ComputeScheduleMgmtClient(DefaultAzureCredential(), SUB_A, base_url=sim.url, **kw)
    return _make


def execute(client: Any, ids: list[str], op: str = "deallocate", retry: tuple[int, int] | None = None,
            **kw: Any) -> Any:
    from azure.mgmt.computeschedule import models as m

    params = m.ExecutionParameters(retry_policy=m.RetryPolicy(retry_count=retry[0], retry_window_in_minutes=retry[1])
                                   if retry else None)
    request = {"deallocate": m.ExecuteDeallocateRequest, "start": m.ExecuteStartRequest,
               "hibernate": m.ExecuteHibernateRequest}[op](execution_parameters=params, resources=m.Resources(ids=ids),
                                                           correlationid=str(uuid.uuid4()))
    return getattr(client.scheduled_actions, f"virtual_machines_execute_{op}")(LOC, request, **kw)


def status(client: Any, op_ids: list[str]) -> list[Any]:
    from azure.mgmt.computeschedule import models as m

    body = m.GetOperationStatusRequest(operation_ids=op_ids, correlationid=str(uuid.uuid4()))
    return list(client.scheduled_actions.virtual_machines_get_operation_status(LOC, body).results)


def state_of(client: Any, op_id: str) -> str:
    state = status(client, [op_id])[0].operation.state
    return str(getattr(state, "value", state))


def power(sim: SimHandle, name: str) -> str:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    view = ComputeManagementClient(DefaultAzureCredential(), SUB_A, base_url=sim.url).virtual_machines.instance_view(
        "rg-s", name)
    return next(s.code for s in view.statuses if s.code.startswith("PowerState/")).split("/", 1)[1]


def test_execute_answers_200_with_the_recorded_shape(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    """Explicit nulls, camel timeZone "UTC", PendingScheduling, one GUID operationId per VM, the
    retryPolicy echoed; ids echoed as given (wire §12.3, rec_ExecuteDeallocate_response.json)."""
    sim, client = cs()
    raw: list[dict[str, Any]] = []
    resp = execute(client, [vm_id("vm-1"), vm_id("vm-2")], retry=(3, 45),
                   raw_response_hook=lambda r: raw.append(json.loads(r.http_response.text())))
    body = raw[0]
    assert list(body) == ["description", "type", "location", "results"]
    assert (body["description"], body["type"], body["location"]) == ("Deallocate Resource request", "VirtualMachines", LOC)
    first = body["results"][0]
    assert first["errorCode"] is None and first["errorDetails"] is None and first["resourceId"] == vm_id("vm-1")
    op = first["operation"]
    assert list(op) == ["operationId", "resourceId", "opType", "subscriptionId", "deadline", "deadlineType", "state",
                        "timeZone", "resourceOperationError", "completedAt", "retryPolicy"]
    assert op["state"] == "PendingScheduling" and op["timeZone"] == "UTC" and op["deadlineType"] == "InitiateAt"
    assert op["resourceOperationError"] is None and op["completedAt"] is None
    assert op["retryPolicy"] == {"retryCount": 3, "retryWindowInMinutes": 45}
    ids = [r.operation.operation_id for r in resp.results]
    assert len(set(ids)) == 2 and all(uuid.UUID(i) for i in ids)
    # status answers carry timeZone "" (the recording)
    raw.clear()
    from azure.mgmt.computeschedule import models as m
    client.scheduled_actions.virtual_machines_get_operation_status(
        LOC, m.GetOperationStatusRequest(operation_ids=ids, correlationid="c"),
        raw_response_hook=lambda r: raw.append(json.loads(r.http_response.text())))
    assert [r["operation"]["timeZone"] for r in raw[0]["results"]] == ["", ""]
    assert sim.stats()["by_operation"]["computeSchedule.executeDeallocate"] == 1


@pytest.mark.parametrize("api", ["2024-10-01", "2025-05-01"])
def test_both_stable_api_versions_are_served(cs: Callable[..., tuple[SimHandle, Any]], api: str) -> None:
    _, client = cs(api_version=api)
    assert execute(client, [vm_id("vm-1")], op="start").results[0].operation.op_type == "Start"


def test_other_api_versions_are_refused_as_arm_does(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    _, client = cs(api_version="2024-06-01-preview")
    with pytest.raises(HttpResponseError) as e:
        execute(client, [vm_id("vm-1")])
    assert e.value.status_code == 400 and e.value.error.code == "NoRegisteredProviderFound"


@pytest.mark.assumption("the Activity Log caller and correlation of ComputeSchedule's VM operations: not established")
def test_an_executing_operation_is_a_real_vm_operation(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    """PendingScheduling -> PendingExecution -> Executing (the VM deallocating on ARM reads) ->
    Succeeded (deallocated); the Activity Log shows the VM operation, as ComputeSchedule's caller."""
    sim, client = cs(fleet(lro=150))  # 3 s at the test's time scale: long enough to read it running
    first = execute(client, [vm_id("vm-1")]).results[0].operation
    op_id = first.operation_id
    seen = {str(getattr(first.state, "value", first.state)), state_of(client, op_id)}
    poll_until(lambda: seen.add(state_of(client, op_id)) or "Executing" in seen, timeout=10)
    assert power(sim, "vm-1") == "deallocating"
    poll_until(lambda: state_of(client, op_id) == "Succeeded", timeout=10)
    assert {"PendingScheduling", "Executing"} <= seen and power(sim, "vm-1") == "deallocated"
    result = status(client, [op_id])[0].operation
    assert result.completed_at is not None and result.resource_operation_error is None
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.monitor import MonitorManagementClient

    mon = MonitorManagementClient(DefaultAzureCredential(), SUB_A, base_url=sim.url)
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = list(mon.activity_logs.list(filter=f"eventTimestamp ge '{since}' and resourceUri eq '{vm_id('vm-1')}'"))
    assert sorted(e.status.value for e in events) == ["Accepted", "Started", "Succeeded"]
    assert {e.caller for e in events} == {"Microsoft.ComputeSchedule"}
    assert {e.operation_name.value for e in events} == {"Microsoft.Compute/virtualMachines/deallocate/action"}


@pytest.mark.parametrize("ids, retry, words", [
    ([vm_id(f"vm-{i}") for i in range(101)], None, "Over 100"),
    ([vm_id("vm-1")], (8, 30), "retryCount 8"),
    ([vm_id("vm-1")], (3, 121), "retryWindowInMinutes 121"),
    ([vm_id("vm-1")], (3, 3), "retryWindowInMinutes 3"),
    ([vm_id("vm-1"), vm_id("b-1", "rg-b", SUB_B)], None, "not in subscription"),
    ([vm_id("east-1", "rg-east")], None, "location 'eastus'"),
    ([vm_id("vm-1"), vm_id("VM-1")], None, "more than once"),
])
def test_invalid_requests_are_refused_whole_with_the_arm_envelope(
        cs: Callable[..., tuple[SimHandle, Any]], ids: list[str], retry: tuple[int, int] | None, words: str) -> None:
    sim, client = cs(fleet(n=101))
    with pytest.raises(HttpResponseError) as e:
        execute(client, ids, retry=retry)
    assert e.value.status_code == 400 and e.value.error.code == "BadRequest" and words in e.value.error.message
    assert sim.stats()["schedule_operations"] == 0  # nothing accepted


def test_a_pending_operation_gives_operation_conflict_and_deallocate_preempts_start(
        cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    sim, client = cs(fleet(power_state="deallocated"))
    start = execute(client, [vm_id("vm-1"), vm_id("vm-2")], op="start").results
    again = execute(client, [vm_id("vm-1")], op="start").results[0]
    assert again.error_code == "OperationConflict" and again.operation is None and again.error_details
    dealloc = execute(client, [vm_id("vm-2")]).results[0]
    assert dealloc.error_code is None and dealloc.operation.operation_id
    preempted = status(client, [start[1].operation.operation_id])[0].operation
    assert preempted.state == "Failed"
    assert (preempted.resource_operation_error.error_code, preempted.resource_operation_error.error_details) == \
        ("OperationCancelled", "Preempted by user request")
    poll_until(lambda: state_of(client, dealloc.operation.operation_id) == "Succeeded", timeout=10)
    assert power(sim, "vm-2") == "deallocated"


@pytest.mark.assumption("cancel of an Executing ComputeSchedule operation: not established (wire 12.4)")
def test_cancel_before_it_starts_and_not_once_it_executes(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    from azure.mgmt.computeschedule import models as m

    sim, client = cs(fleet(lro=150))
    ops = [r.operation.operation_id for r in execute(client, [vm_id("vm-1")]).results]
    cancelled = client.scheduled_actions.virtual_machines_cancel_operations(
        LOC, m.CancelOperationsRequest(operation_ids=ops, correlationid="c")).results[0].operation
    assert cancelled.state == "Cancelled" and cancelled.completed_at is not None
    assert cancelled.resource_operation_error.error_code == "OperationCancelledByUser"
    assert cancelled.resource_operation_error.error_details == f"Operation: {ops[0]} was cancelled by the user."
    assert power(sim, "vm-1") == "running"
    # once Executing, a cancel changes nothing (not established: the stricter case)
    other = execute(client, [vm_id("vm-2")]).results[0].operation.operation_id
    poll_until(lambda: state_of(client, other) == "Executing", timeout=10)
    after = client.scheduled_actions.virtual_machines_cancel_operations(
        LOC, m.CancelOperationsRequest(operation_ids=[other], correlationid="c")).results[0].operation
    assert after.state == "Executing" and after.resource_operation_error is None
    poll_until(lambda: state_of(client, other) == "Succeeded", timeout=10)
    assert power(sim, "vm-2") == "deallocated"


@pytest.mark.assumption("the delay between ComputeSchedule's retry attempts is not established (the simulator: "
                        "retry_delay_seconds, 60 s), so how many attempts fit in a retry window is an assumption")
def test_failed_attempts_are_retried_per_retry_policy_and_listed_by_get_operation_errors(
        cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    from azure.mgmt.computeschedule import models as m

    sim, client = cs(fleet(power_state="deallocated", faults=[
        {"vm": "vm-1", "operation": "start", "error": "AllocationFailed", "times": 2},
        {"vm": "vm-2", "operation": "start", "error": "AllocationFailed", "times": "always"}]))
    results = execute(client, [vm_id("vm-1"), vm_id("vm-2")], op="start", retry=(2, 30)).results
    ok, bad = (r.operation.operation_id for r in results)
    poll_until(lambda: {state_of(client, ok), state_of(client, bad)} <= {"Succeeded", "Failed"}, timeout=20)
    assert (state_of(client, ok), state_of(client, bad)) == ("Succeeded", "Failed")
    errs = {e.operation_id: e for e in client.scheduled_actions.virtual_machines_get_operation_errors(
        LOC, m.GetOperationErrorsRequest(operation_ids=[ok, bad])).results}
    assert [x.error_code for x in errs[ok].operation_errors] == ["AllocationFailed"] * 2
    assert [x.error_code for x in errs[bad].operation_errors] == ["AllocationFailed"] * 3  # 1 + retryCount 2
    assert all(x.crp_operation_id for x in errs[bad].operation_errors)
    assert status(client, [bad])[0].operation.resource_operation_error.error_code == "AllocationFailed"
    assert power(sim, "vm-1") == "running" and power(sim, "vm-2") == "deallocated"


def test_blocked_holds_an_operation_until_the_block_lifts(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    sim, client = cs(fleet(faults=[{"vm": "vm-1", "operation": "deallocate", "error": "Blocked", "times": 1,
                                    "delay_seconds": 100}]))
    op_id = execute(client, [vm_id("vm-1")], retry=(1, 30)).results[0].operation.operation_id
    poll_until(lambda: state_of(client, op_id) == "Blocked", timeout=10)
    assert power(sim, "vm-1") == "running"
    poll_until(lambda: state_of(client, op_id) == "Succeeded", timeout=20)


@pytest.mark.assumption("which error ends a Blocked operation past its window: not established")
def test_blocked_past_the_deadline_and_retry_window_fails(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    _, client = cs(fleet(faults=[{"vm": "vm-1", "operation": "deallocate", "error": "Blocked", "times": 1,
                                  "delay_seconds": 60}]))
    op_id = execute(client, [vm_id("vm-1")]).results[0].operation.operation_id  # no retryPolicy: window 0
    poll_until(lambda: state_of(client, op_id) == "Failed", timeout=10)
    err = status(client, [op_id])[0].operation.resource_operation_error
    assert err.error_code == "NonSchedulingOperationsBlockedException"


def test_every_post_is_an_arm_write_with_the_write_quota_headers(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    """Status polls included: each POST takes a token from the ARM write bucket and answers its
    header; with 2 tokens and no refill, the third POST (a status poll) is throttled."""
    f = fleet()
    f["throttling"] = {"arm": {"writes": {"capacity": 2, "per_second": 0.0001}}}
    sim, client = cs(f)
    seen: list[dict[str, str]] = []
    op_id = execute(client, [vm_id("vm-1")], raw_response_hook=lambda r: seen.append(dict(r.http_response.headers)))
    from azure.mgmt.computeschedule import models as m
    body = m.GetOperationStatusRequest(operation_ids=[op_id.results[0].operation.operation_id], correlationid="c")
    client.scheduled_actions.virtual_machines_get_operation_status(
        LOC, body, raw_response_hook=lambda r: seen.append(dict(r.http_response.headers)))
    assert [h["x-ms-ratelimit-remaining-subscription-writes"] for h in seen] == ["1", "0"]
    with pytest.raises(HttpResponseError) as e:
        client.scheduled_actions.virtual_machines_get_operation_status(LOC, body, retry_total=0)
    assert e.value.status_code == 429 and e.value.response.headers["Retry-After"]
    st = sim.stats()
    assert st["writes"] == 3 and st["reads"] == 0 and st["throttled_by_bucket"] == {"SubscriptionWrites": 1}
    assert st["by_operation"]["computeSchedule.getOperationStatus"] == 2


@pytest.mark.assumption("unknown VM and operation ids as per-item errors: not established")
def test_unknown_operation_ids_and_vms_are_per_item_errors(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    _, client = cs()
    missing = str(uuid.uuid4())
    (r,) = status(client, [missing])
    assert r.error_code == "OperationNotFound" and r.operation is None
    (v,) = execute(client, [vm_id("nosuch")]).results
    assert v.error_code == "ResourceNotFound" and v.operation is None


def test_an_operation_is_found_only_where_it_was_created(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    """Every call is scoped to a subscription and a region (wire §12): asked from another region or
    subscription, an operation is not found, by status, cancel or errors alike."""
    from azure.mgmt.computeschedule import models as m

    _, client = cs()
    op_id = execute(client, [vm_id("vm-1")]).results[0].operation.operation_id
    actions = client.scheduled_actions
    for loc in ("eastus", LOC):
        (r,) = actions.virtual_machines_get_operation_status(
            loc, m.GetOperationStatusRequest(operation_ids=[op_id], correlationid="c")).results
        assert (r.error_code == "OperationNotFound") == (loc != LOC)
    (c,) = actions.virtual_machines_cancel_operations(
        "eastus", m.CancelOperationsRequest(operation_ids=[op_id], correlationid="c")).results
    assert c.error_code == "OperationNotFound"
    (e,) = actions.virtual_machines_get_operation_errors("eastus", m.GetOperationErrorsRequest(operation_ids=[op_id])).results
    assert e.request_error_code == "OperationNotFound"


@pytest.mark.assumption("whether ComputeSchedule matches other spellings and shapes of its fields is not "
                        "established; the default refuses them")
def test_bodies_are_read_as_the_spec_shapes_them(cs: Callable[..., tuple[SimHandle, Any]]) -> None:
    """Field names as the spec spells them (and its documented aliases), `resources` an object with
    `ids`, `operationIds` a list, `executionParameters` present on a write: anything else is a 400."""
    from azure.core.rest import HttpRequest

    sim, client = cs()
    base = f"/subscriptions/{SUB_A}/providers/Microsoft.ComputeSchedule/locations/{LOC}/virtualMachines"

    def post(action: str, body: dict[str, Any]) -> Any:
        return client._client.send_request(HttpRequest("POST", f"{sim.url}{base}{action}?api-version=2024-10-01",
                                                       json=body))

    ok = {"executionParameters": {}, "resources": {"ids": [vm_id("vm-1")]}, "correlationid": str(uuid.uuid4())}
    for bad, words in (({**{k: v for k, v in ok.items() if k != "resources"}, "RESOURCES": ok["resources"]},
                        "resources is required"),
                       ({**ok, "resources": [vm_id("vm-1")]}, "resources is required"),
                       ({k: v for k, v in ok.items() if k != "executionParameters"}, "executionParameters is required")):
        r = post("ExecuteDeallocate", bad)
        assert r.status_code == 400 and words in r.json()["error"]["message"], r.text()
    r = post("GetOperationStatus", {"operationIds": {"ids": ["x"]}, "correlationid": "c"})
    assert r.status_code == 400 and "No operationids provided" in r.json()["error"]["message"]
    assert sim.stats()["schedule_operations"] == 0
    assert post("ExecuteDeallocate", ok).status_code == 200
