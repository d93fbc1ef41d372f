"""The simulator's Activity Log, driven through azure-mgmt-monitor's `activity_logs.list`.

Writes go through azure-mgmt-compute; reads through azure-mgmt-monitor; tokens through
DefaultAzureCredential (managed identity, App Service protocol). Nothing is mocked.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from conftest import BASIC, SUB_A, poll_until

OP_POWEROFF = "Microsoft.Compute/virtualMachines/powerOff/action"
CALLER = "tester@contoso.example"


# --------------------------------------------------------------------------- helpers
def vm_id(rg: str, name: str, sub: str = SUB_A) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def basic_fleet() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(BASIC.read_text(encoding="utf-8")))


def clients(handle: Any) -> tuple[Any, Any]:
    """Compute and Monitor clients bound to `handle` (a credential made after its env is set)."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.monitor import MonitorManagementClient

    cred = DefaultAzureCredential()
    return (ComputeManagementClient(cred, SUB_A, base_url=handle.url),
            MonitorManagementClient(cred, SUB_A, base_url=handle.url))


def since(minutes: float = 10, quoted: bool = True) -> str:
    ts = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"eventTimestamp ge '{ts}'" if quoted else f"eventTimestamp ge {ts}"


def events(monitor: Any, extra: str = "", select: str | None = None, start: str | None = None) -> list[Any]:
    flt = start or since()
    if extra:
        flt += " and " + extra
    return list(monitor.activity_logs.list(filter=flt, select=select))


def by_cid(monitor: Any, cid: str) -> list[Any]:
    return events(monitor, f"correlationId eq '{cid}'")


def cid_header(cid: str) -> dict[str, Any]:
    return {"headers": {"x-ms-correlation-request-id": cid}}


# VMs on which performMaintenance is refused (not eligible, window closed, or no maintenance planned).
# Spread over several VMs: Compute's per-VM UpdateVM bucket holds only 12 writes per VM.
REFUSERS = [("rg-app", "notallowed-01"), ("rg-app", "closed-01"), ("rg-misc", "eph-01"), ("rg-misc", "hib-01"),
            ("rg-misc", "node-0"), ("rg-misc", "stopped-01"), ("rg-misc", "dealloc-01")]


def refuse_maintenance(compute: Any, cid: str | None = None, target: tuple[str, str] = REFUSERS[0]) -> None:
    """performMaintenance that Compute refuses: a synchronous 409, still logged (Started + Failed)."""
    kw = cid_header(cid) if cid else {}
    with pytest.raises(ResourceExistsError) as info:
        compute.virtual_machines.begin_perform_maintenance(*target, **kw)
    assert info.value.error is not None and info.value.error.code == "OperationNotAllowed"


# --------------------------------------------------------------------------- event contents
def test_write_emits_started_accepted_succeeded_after_ingestion_delay(make_sim: Any) -> None:
    fleet = basic_fleet()
    fleet["time"].update(activity_log_delay_seconds=1.5, jitter=0)  # exact delays (jitter has its own test)
    handle = make_sim(fleet)
    compute, monitor = clients(handle)
    cid = str(uuid.uuid4())

    poller = compute.virtual_machines.begin_power_off("rg-app", "app-01", **cid_header(cid))
    # Started and Accepted are recorded now, but the Activity Log only shows them after ingestion.
    assert handle.stats()["activity_events"] == 2
    assert by_cid(monitor, cid) == []
    assert events(monitor) == []
    poller.result()

    got = poll_until(lambda: (lambda e: e if len(e) == 3 else None)(by_cid(monitor, cid)), timeout=10)
    # newest first, like the service
    assert [e.status.value for e in got] == ["Succeeded", "Accepted", "Started"]
    assert [e.event_name.value for e in got] == ["EndRequest", "EndRequest", "BeginRequest"]
    assert got[1].sub_status.value == "Accepted"
    op_ids = {e.operation_id for e in got}
    assert len(op_ids) == 1 and None not in op_ids
    for e in got:
        assert e.correlation_id == cid
        assert e.caller == CALLER
        assert e.operation_name.value == OP_POWEROFF
        assert e.resource_id.lower() == vm_id("rg-app", "app-01").lower()
        assert e.resource_group_name.lower() == "rg-app"
        assert e.subscription_id == SUB_A
        assert e.level == "Informational"
        assert isinstance(e.event_timestamp, datetime) and e.event_timestamp.tzinfo is not None
        assert isinstance(e.submission_timestamp, datetime)
        # ingestion delay shows in the timestamps too
        assert (e.submission_timestamp - e.event_timestamp).total_seconds() == pytest.approx(1.5, abs=0.01)
        assert e.properties and all(isinstance(v, str) for v in e.properties.values())
        assert e.claims and all(isinstance(v, str) for v in e.claims.values())
        assert e.http_request.method == "POST" and e.http_request.client_request_id
        assert e.event_data_id and e.id.lower().startswith(e.resource_id.lower() + "/events/")
    started, accepted, succeeded = got[2], got[1], got[0]
    assert started.event_timestamp <= accepted.event_timestamp <= succeeded.event_timestamp


def test_failed_lro_is_logged_as_failed(sim: Any, compute: Any, monitor: Any) -> None:
    sim.faults({"vm": "dealloc-01", "operation": "start", "error": "AllocationFailed"})
    cid = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.begin_start("rg-misc", "dealloc-01", **cid_header(cid)).result()
    assert info.value.error.code == "AllocationFailed"
    got = poll_until(lambda: (lambda e: e if len(e) == 3 else None)(by_cid(monitor, cid)))
    assert [e.status.value for e in got] == ["Failed", "Accepted", "Started"]
    failed = got[0]
    assert failed.level == "Error"
    assert failed.operation_name.value == "Microsoft.Compute/virtualMachines/start/action"
    assert all(isinstance(v, str) for v in failed.properties.values())
    assert "AllocationFailed" in failed.properties.get("statusMessage", "")


def test_synchronous_refusal_is_logged_as_started_and_failed(sim: Any, compute: Any, monitor: Any) -> None:
    cid = str(uuid.uuid4())
    refuse_maintenance(compute, cid)
    got = poll_until(lambda: (lambda e: e if len(e) == 2 else None)(by_cid(monitor, cid)))
    assert [e.status.value for e in got] == ["Failed", "Started"]
    failed = got[0]
    assert failed.level == "Error"
    assert failed.sub_status.value == "Conflict"
    assert failed.operation_name.value == "Microsoft.Compute/virtualMachines/performMaintenance/action"
    assert failed.caller == CALLER
    assert failed.resource_id.lower() == vm_id("rg-app", "notallowed-01").lower()
    assert all(isinstance(v, str) for v in failed.properties.values())
    assert "OperationNotAllowed" in failed.properties["statusMessage"]
    # and nothing became an operation
    assert sim.stats()["operations_started"] == 0


# --------------------------------------------------------------------------- $filter grammar
@pytest.fixture
def logged(sim: Any, compute: Any, monitor: Any) -> dict[str, str]:
    """Three writes in two resource groups, one of them refused; all visible in the log."""
    cids = {"off": str(uuid.uuid4()), "restart": str(uuid.uuid4()), "refused": str(uuid.uuid4())}
    p1 = compute.virtual_machines.begin_power_off("rg-app", "app-02", **cid_header(cids["off"]))
    p2 = compute.virtual_machines.begin_restart("rg-misc", "eph-01", **cid_header(cids["restart"]))
    refuse_maintenance(compute, cids["refused"])
    p1.result()
    p2.result()
    poll_until(lambda: len(events(monitor)) == 8)
    return cids


def test_filter_by_scope_fields(logged: dict[str, str], monitor: Any) -> None:
    every = events(monitor)
    assert len(every) == 8

    got = events(monitor, f"correlationId eq '{logged['off']}'")
    assert len(got) == 3 and {e.correlation_id for e in got} == {logged["off"]}

    got = events(monitor, "resourceGroupName eq 'rg-misc'")
    assert len(got) == 3 and {e.resource_group_name for e in got} == {"rg-misc"}
    # resource group names compare case-insensitively, as in ARM
    assert len(events(monitor, "resourceGroupName eq 'RG-APP'")) == 5

    target = vm_id("rg-app", "app-02")
    for field in ("resourceUri", "resourceId"):
        got = events(monitor, f"{field} eq '{target}'")
        assert len(got) == 3 and {e.resource_id.lower() for e in got} == {target.lower()}, field

    assert len(events(monitor, "resourceProvider eq 'Microsoft.Compute'")) == 8
    assert events(monitor, "resourceProvider eq 'Microsoft.Storage'") == []


def test_filter_by_caller_status_and_levels(logged: dict[str, str], monitor: Any) -> None:
    assert len(events(monitor, f"caller eq '{CALLER}'")) == 8
    assert events(monitor, "caller eq 'someone.else@contoso.example'") == []

    failed = events(monitor, "status eq 'Failed'")
    assert len(failed) == 1 and failed[0].correlation_id == logged["refused"]
    # azure-cli style: a scope filter plus caller and status
    got = events(monitor, f"resourceGroupName eq 'rg-app' and caller eq '{CALLER}' and status eq 'Succeeded'")
    assert [e.correlation_id for e in got] == [logged["off"]]

    errors = events(monitor, "levels eq 'Error'")
    assert [e.correlation_id for e in errors] == [logged["refused"]]
    assert len(events(monitor, "levels eq 'Critical,Error,Warning,Informational'")) == 8
    assert len(events(monitor, "levels eq 'Informational'")) == 7
    assert len(events(monitor, "eventChannels eq 'Admin, Operation'")) == 8


def test_filter_time_forms(logged: dict[str, str], monitor: Any) -> None:
    # unquoted timestamps, ge without le
    assert len(events(monitor, start=since(quoted=False))) == 8
    # 7 fractional digits and an explicit le
    now = datetime.now(timezone.utc)
    lo = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")
    hi = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")
    assert len(events(monitor, start=f"eventTimestamp ge '{lo}' and eventTimestamp le '{hi}'")) == 8
    # a window that ended before the writes holds nothing
    old_hi = (now - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert events(monitor, start=f"eventTimestamp ge '{lo}' and eventTimestamp le '{old_hi}'") == []


@pytest.mark.parametrize("flt, needle", [
    pytest.param(since() + " and resourceGroupName eq 'rg-app' and correlationId eq '{cid}'", "Only one of",
                 id="two-scopes"),
    pytest.param("resourceGroupName eq 'rg-app'", "start time", id="no-eventTimestamp"),
    pytest.param(since() + " and bogusField eq 'x'", "not supported", id="unknown-field"),
])
def test_bad_filters_are_400(sim: Any, monitor: Any, flt: str, needle: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(monitor.activity_logs.list(filter=flt.format(cid=uuid.uuid4())))
    assert info.value.status_code == 400
    assert needle in str(info.value)


def test_window_older_than_90_days_is_400(sim: Any, monitor: Any) -> None:
    start = (datetime.now(timezone.utc) - timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(HttpResponseError) as info:
        list(monitor.activity_logs.list(filter=f"eventTimestamp ge '{start}'"))
    assert info.value.status_code == 400
    assert "90 days" in str(info.value)
    # 89 days back is fine
    start = (datetime.now(timezone.utc) - timedelta(days=89)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert list(monitor.activity_logs.list(filter=f"eventTimestamp ge '{start}'")) == []


# --------------------------------------------------------------------------- $select
def test_select_with_spaces_returns_only_selected_fields(logged: dict[str, str], monitor: Any) -> None:
    select = "eventName , operationName , status , correlationId , eventTimestamp , level"  # azure-cli joins with ' , '
    got = events(monitor, f"correlationId eq '{logged['off']}'", select=select)
    assert len(got) == 3
    for e in got:
        assert e.correlation_id == logged["off"]
        assert e.operation_name.value == OP_POWEROFF
        assert e.status.value in ("Started", "Accepted", "Succeeded")
        assert e.event_name.value in ("BeginRequest", "EndRequest")
        assert e.event_timestamp is not None and e.level == "Informational"
        for absent in ("caller", "claims", "properties", "http_request", "resource_id", "submission_timestamp",
                       "event_data_id", "sub_status", "authorization", "resource_group_name", "id"):
            assert getattr(e, absent) is None, absent


def test_select_unknown_field_is_400(sim: Any, monitor: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(monitor.activity_logs.list(filter=since(), select="eventName,notAField"))
    assert info.value.status_code == 400


# --------------------------------------------------------------------------- paging
def test_paging_follows_absolute_next_links_without_duplicates_or_gaps(sim: Any, compute: Any, monitor: Any) -> None:
    # 13 refusals (2 events each) + 1 power-off (3 events) = 29 events; page size is 10 in basic.yaml
    for i in range(13):
        refuse_maintenance(compute, target=REFUSERS[i % len(REFUSERS)])
    compute.virtual_machines.begin_power_off("rg-app", "app-03").result()
    before = poll_until(lambda: (lambda e: e if len(e) == 29 else None)(events(monitor)))
    ids_before = [e.event_data_id for e in before]
    assert len(set(ids_before)) == 29

    flt = since()
    pages = monitor.activity_logs.list(filter=flt).by_page()
    seen: list[str] = [e.event_data_id for e in next(pages)]
    assert len(seen) == 10
    next_link = pages.continuation_token
    assert next_link.startswith(sim.url + "/") and "api-version=" in next_link and "skiptoken" in next_link.lower()

    # new events land at the head of the (newest-first) log while we are between pages
    new_cid = str(uuid.uuid4())
    refuse_maintenance(compute, new_cid, target=REFUSERS[0])
    refuse_maintenance(compute, new_cid, target=REFUSERS[1])
    poll_until(lambda: len(by_cid(monitor, new_cid)) == 4)

    sizes = [len(seen)]
    for page in pages:
        items = [e.event_data_id for e in page]
        sizes.append(len(items))
        seen.extend(items)
    assert sizes == [10, 10, 9]
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert set(seen) == set(ids_before), "the pager lost events or returned ones newer than the query"

    # a new query sees the new ones too, again exactly once each
    after = [e.event_data_id for e in events(monitor)]
    assert len(after) == len(set(after)) == 33
    assert set(ids_before) < set(after)

    st = sim.stats()["by_operation"]
    assert st["activityLogs.list"] >= 3
