"""The simulator, driven by the real Azure SDK (azure-identity + azure-mgmt-compute).

Nothing is mocked or patched: DefaultAzureCredential gets its tokens through the App Service
managed-identity protocol from the simulator, and ComputeManagementClient talks HTTPS to it with
the simulator's test CA. Raw urllib requests check what the SDK hides (headers, status codes).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import yaml
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient

from conftest import BASIC, SUB_A, SUB_B, SimHandle, poll_until, power_state

SCOPE = "https://management.azure.com/.default"
TENANT = "11111111-0000-0000-0000-000000000000"
VM_PATH = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"


# ---------------------------------------------------------------------------- helpers
def fleet_dict(lro: dict[str, float] | None = None, **time_cfg: Any) -> dict[str, Any]:
    """basic.yaml as a mapping, with some `time:` settings changed."""
    data = yaml.safe_load(BASIC.read_text(encoding="utf-8"))
    if lro:
        data["time"]["lro_seconds"].update(lro)
    data["time"].update(time_cfg)
    return data


def client_for(h: SimHandle, sub: str = SUB_A) -> ComputeManagementClient:
    """A fresh credential + client for a simulator started with make_sim (env already points at it)."""
    return ComputeManagementClient(DefaultAzureCredential(), sub, base_url=h.url)


def raw(h: SimHandle, path_or_url: str, *, token: str | None = None, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, parsed JSON body or None) for one HTTPS request to the simulator."""
    url = path_or_url if path_or_url.startswith("https://") else h.url + path_or_url
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}),
                                 data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = ssl.create_default_context(cafile=str(h.sim.ca_path))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            status, hdrs, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, body = exc.code, exc.headers, exc.read()
    return status, hdrs, (json.loads(body) if body else None)


def token_of(credential: Any) -> str:
    return credential.get_token(SCOPE).token


def jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    assert len(parts) == 3 and all(parts), f"not JWT-shaped: {token[:40]}..."
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def statuses(compute: Any, rg: str, name: str) -> list[str]:
    return [s.code for s in compute.virtual_machines.instance_view(rg, name).statuses]


def recorder() -> tuple[list[Any], Callable[[Any], None]]:
    """A raw_response_hook (a documented per-call azure-core option) that keeps every response."""
    seen: list[Any] = []

    def hook(pipeline_response: Any) -> None:
        seen.append(pipeline_response.http_response)

    return seen, hook


# ---------------------------------------------------------------------------- 1. identity
def test_default_credential_uses_app_service_protocol(sim: SimHandle, credential: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    before = time.time()
    tok = credential.get_token(SCOPE)
    assert 3500 < tok.expires_on - before <= 3601
    stats = sim.stats()
    assert stats["tokens_issued"] == 1
    assert stats["by_operation"].get("identity.token") == 1

    # The same protocol by hand: 2019-08-01 + X-IDENTITY-HEADER, epoch expires_on.
    q = "?api-version=2019-08-01&resource=https://management.azure.com"
    status, _, body = raw(sim, "/msi/token" + q, headers={"X-IDENTITY-HEADER": sim.env["IDENTITY_HEADER"]})
    assert status == 200
    assert body["token_type"] == "Bearer" and body["resource"] == "https://management.azure.com"
    assert int(body["expires_on"]) > before + 3500

    # DAC really depends on IDENTITY_HEADER: with a wrong one it cannot get a token.
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    with pytest.raises(ClientAuthenticationError):
        DefaultAzureCredential().get_token(SCOPE)
    assert sim.stats()["tokens_issued"] == 2  # only the two good requests got tokens


def test_token_endpoint_2017_secret_header_and_refusals(sim: SimHandle) -> None:
    secret = sim.env["IDENTITY_HEADER"]
    q17 = "/msi/token?api-version=2017-09-01&resource=https://management.azure.com/"
    status, _, body = raw(sim, q17, headers={"secret": secret})
    assert status == 200, body
    assert body["access_token"].count(".") == 2
    # 2017-09-01 answers expires_on as a date string, e.g. "11/21/2026 02:01:19 +00:00".
    exp = datetime.strptime(body["expires_on"], "%m/%d/%Y %H:%M:%S %z")
    assert exp > datetime.now(timezone.utc)

    q19 = "/msi/token?api-version=2019-08-01&resource=https://management.azure.com"
    for hdrs in ({}, {"secret": "wrong"}, {"X-IDENTITY-HEADER": "wrong"}):
        for q in (q17, q19):
            status, _, body = raw(sim, q, headers=hdrs)
            assert status == 401, (hdrs, q, body)
            assert "access_token" not in (body or {})
    assert sim.stats()["tokens_issued"] == 1


def test_token_is_jwt_with_identity_claims(sim: SimHandle, credential: Any) -> None:
    claims = jwt_claims(token_of(credential))
    assert claims["tid"] == TENANT
    assert uuid.UUID(claims["oid"])
    assert claims["upn"] == "tester@contoso.example"
    assert claims["aud"] == "https://management.azure.com"
    assert claims["exp"] > time.time()


def test_arm_without_token_is_401(sim: SimHandle, credential: Any) -> None:
    status, hdrs, body = raw(sim, f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/"
                                  "Microsoft.Compute/virtualMachines?api-version=2026-04-01")
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    www = hdrs.get("WWW-Authenticate", "")
    assert www.startswith("Bearer ") and f"authorization_uri=\"https://login.windows.net/{TENANT}\"" in www
    assert 'error="invalid_token"' in www

    # The SDK with no authentication policy at all sends no Authorization header.
    bare = ComputeManagementClient(credential, SUB_A, base_url=sim.url, authentication_policy=SansIOHTTPPolicy())
    with pytest.raises(ClientAuthenticationError) as ei:
        bare.virtual_machines.get("rg-app", "app-01")
    assert ei.value.status_code == 401
    assert ei.value.error is not None and ei.value.error.code == "AuthenticationFailed"
    assert "WWW-Authenticate" in ei.value.response.headers


def test_token_from_another_simulator_is_refused(make_sim: Callable[..., SimHandle], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    one = make_sim()
    two = make_sim()
    bundle = tmp_path / "both-cas.pem"
    bundle.write_text(one.sim.ca_path.read_text() + two.sim.ca_path.read_text())
    for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(k, one.env[k])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    cred = DefaultAzureCredential()  # tokens come from simulator one

    assert ComputeManagementClient(cred, SUB_A, base_url=one.url).virtual_machines.get("rg-app", "app-01").name == "app-01"
    with pytest.raises(ClientAuthenticationError) as ei:
        ComputeManagementClient(cred, SUB_A, base_url=two.url).virtual_machines.get("rg-app", "app-01")
    assert ei.value.status_code == 401
    assert ei.value.error.code == "InvalidAuthenticationToken"

    status, hdrs, body = raw(two, f"/subscriptions/{SUB_A}?api-version=2022-12-01", token=token_of(cred))
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in hdrs


def test_short_token_lifetime_client_keeps_working(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet_dict(lro={"start": 3}, token_lifetime_seconds=2))
    cred = DefaultAzureCredential()
    compute = ComputeManagementClient(cred, SUB_A, base_url=h.url)
    first = token_of(cred)
    assert jwt_claims(first)["exp"] - time.time() <= 2.5

    t0 = time.monotonic()
    poller = compute.virtual_machines.begin_start("rg-misc", "dealloc-01", polling=False)
    assert poller.done()
    assert power_state(compute, "rg-misc", "dealloc-01") == "starting"
    poll_until(lambda: power_state(compute, "rg-misc", "dealloc-01") == "running", timeout=15, interval=0.25)
    assert time.monotonic() - t0 > 2.5  # the client kept working across at least one token expiry

    # The first token really has expired by now: ARM refuses it ...
    status, _, body = raw(h, f"/subscriptions/{SUB_A}?api-version=2022-12-01", token=first)
    assert status == 401 and body["error"]["code"] == "ExpiredAuthenticationToken"
    # ... while the client (with the SDK poller this time) still works.
    compute.virtual_machines.begin_power_off("rg-misc", "dealloc-01").result(timeout=10)
    assert power_state(compute, "rg-misc", "dealloc-01") == "stopped"
    assert h.stats()["tokens_issued"] > 1


def test_subscriptions_raw(sim: SimHandle, credential: Any) -> None:
    tok = token_of(credential)
    status, _, body = raw(sim, "/subscriptions?api-version=2022-12-01", token=tok)
    assert status == 200
    subs = {s["subscriptionId"]: s for s in body["value"]}
    assert set(subs) == {SUB_A, SUB_B}
    assert subs[SUB_A]["displayName"] == "test-sub-a" and subs[SUB_A]["tenantId"] == TENANT
    assert subs[SUB_B]["state"] == "Enabled" and subs[SUB_B]["id"] == f"/subscriptions/{SUB_B}"

    status, _, body = raw(sim, f"/subscriptions/{SUB_B}?api-version=2022-12-01", token=tok)
    assert status == 200 and body["subscriptionId"] == SUB_B and body["displayName"] == "test-sub-b"

    unknown = str(uuid.uuid4())
    status, _, body = raw(sim, f"/subscriptions/{unknown}?api-version=2022-12-01", token=tok)
    assert status == 404 and body["error"]["code"] == "SubscriptionNotFound"


def test_metadata_endpoints(sim: SimHandle) -> None:
    status, _, body = raw(sim, "/metadata/endpoints?api-version=2019-05-01")
    assert status == 200 and isinstance(body, list) and body
    assert body[0]["resourceManager"].rstrip("/") == sim.url
    assert "https://management.azure.com/" in body[0]["authentication"]["audiences"]

    # what `az cloud register --endpoint-resource-manager URL` asks for: this endpoint's own cloud,
    # also when the client joins the URL with a doubled slash
    status, _, one = raw(sim, "//metadata/endpoints?api-version=2022-09-01")
    assert status == 200 and isinstance(one, dict) and one["resourceManager"].rstrip("/") == sim.url

    status, _, old = raw(sim, "/metadata/endpoints?api-version=2015-01-01")
    assert status == 200 and isinstance(old, dict)
    assert "resourceManager" not in old
    assert old["galleryEndpoint"].rstrip("/") == sim.url
    assert old["authentication"]["loginEndpoint"].startswith("https://login.")


# ---------------------------------------------------------------------------- 2. reading VMs
def test_list_by_resource_group_follows_next_link(sim: SimHandle, compute: Any) -> None:
    seen, hook = recorder()
    names = [vm.name for vm in compute.virtual_machines.list("rg-app", raw_response_hook=hook)]
    assert names == [f"app-{i:02d}" for i in range(1, 7)] + ["closed-01", "notallowed-01"]
    assert sim.stats()["by_operation"]["virtualMachines.list"] == 2
    assert len(seen) == 2
    nxt = urlsplit(seen[1].request.url)
    assert f"{nxt.scheme}://{nxt.netloc}" == sim.url and "api-version=" in nxt.query and "skiptoken" in nxt.query.lower()
    assert [vm.name for vm in compute.virtual_machines.list("rg-misc")] == [
        "eph-01", "hib-01", "node-0", "stopped-01", "dealloc-01", "broken-01"]


@pytest.mark.parametrize("flag", ["true", "True"])
def test_list_all_status_only_items_are_sparse_by_default(sim: SimHandle, compute: Any, flag: str) -> None:
    """The real capture's shape (wire contract section 15); the full shape is a fleet option
    (tests/test_sim_platform.py)."""
    vms = {vm.name: vm for vm in compute.virtual_machines.list_all(status_only=flag)}
    assert len(vms) == 14  # 8 + 6 in subscription A, pages of 5
    assert sim.stats()["by_operation"]["virtualMachines.listAll"] == 3
    for name, vm in vms.items():
        assert vm.instance_view is not None, name
        power = [s.code for s in vm.instance_view.statuses if s.code.startswith("PowerState/")]
        assert len(power) == 1, (name, power)
        assert vm.id and vm.location == "westeurope" and vm.type == "Microsoft.Compute/virtualMachines"
        assert vm.vm_id and vm.provisioning_state == ("Failed" if name == "broken-01" else "Succeeded")
        # sparse: none of the model's other parts, and no maintenance status
        assert vm.tags is None and vm.zones is None and vm.storage_profile is None, name
        assert vm.hardware_profile is not None and vm.hardware_profile.vm_size is None, name
        assert vm.availability_set is None and vm.virtual_machine_scale_set is None and vm.priority is None
        assert vm.instance_view.platform_update_domain is None
        assert vm.instance_view.maintenance_redeploy_status is None, name
    assert vms["stopped-01"].instance_view.statuses[1].code == "PowerState/stopped"
    assert vms["dealloc-01"].instance_view.statuses[1].code == "PowerState/deallocated"
    assert vms["dealloc-01"].zones is None
    faults = [vms[f"app-{i:02d}"].instance_view.platform_fault_domain for i in range(1, 7)]
    assert faults == [0, 1, 0, 1, 0, 1]  # 2 FDs, round robin
    assert vms["eph-01"].instance_view.platform_fault_domain is None  # not in an availability set
    # ... while the VM's own instance view still carries the planned maintenance
    assert compute.virtual_machines.instance_view("rg-app", "app-01").maintenance_redeploy_status is not None
    # Without statusOnly the list carries no instance views.
    assert all(vm.instance_view is None for vm in compute.virtual_machines.list("rg-misc"))


@pytest.mark.parametrize("expand", ["instanceView", "InstanceView"])
def test_get_with_expand_instance_view(compute: Any, expand: str) -> None:
    vm = compute.virtual_machines.get("rg-misc", "stopped-01", expand=expand)
    assert vm.instance_view is not None
    codes = [s.code for s in vm.instance_view.statuses]
    assert codes == ["ProvisioningState/succeeded", "PowerState/stopped"]
    assert vm.instance_view.computer_name == "stopped-01"
    assert compute.virtual_machines.get("rg-misc", "stopped-01").instance_view is None


def test_instance_view(compute: Any) -> None:
    view = compute.virtual_machines.instance_view("rg-app", "app-02")
    assert [s.code for s in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    assert view.statuses[1].display_status == "VM running"
    assert (view.platform_update_domain, view.platform_fault_domain) == (1, 1)
    assert view.maintenance_redeploy_status.maintenance_window_start_time > datetime.now(timezone.utc)
    assert view.vm_agent is not None and view.disks[0].name == "app-02_OsDisk_1"

    broken = compute.virtual_machines.instance_view("rg-misc", "broken-01")
    assert broken.statuses[0].code.startswith("ProvisioningState/failed/")
    assert broken.statuses[0].level == "Error"
    dealloc = compute.virtual_machines.instance_view("rg-misc", "dealloc-01")
    assert dealloc.statuses[1].code == "PowerState/deallocated" and dealloc.vm_agent is None


def test_vm_model_attributes(compute: Any) -> None:
    vms = {vm.name: vm for vm in compute.virtual_machines.list_all()}
    app = vms["app-01"]
    assert app.availability_set is not None
    assert app.availability_set.id.lower().endswith("/resourcegroups/rg-app/providers/microsoft.compute/availabilitysets/as-app")
    assert app.tags == {"env": "dev", "app": "web"}
    assert app.virtual_machine_scale_set is None and not app.zones

    node = vms["node-0"]
    assert node.virtual_machine_scale_set.id.endswith("/providers/Microsoft.Compute/virtualMachineScaleSets/vmss-a")
    assert node.availability_set is None

    eph = vms["eph-01"]
    assert eph.storage_profile.os_disk.diff_disk_settings.option == "Local"
    assert vms["app-01"].storage_profile.os_disk.diff_disk_settings is None

    hib = vms["hib-01"]
    assert hib.additional_capabilities.hibernation_enabled is True
    assert hib.priority == "Spot" and hib.tags == {"env": "test"}
    assert vms["app-01"].priority in (None, "Regular")
    assert vms["app-01"].additional_capabilities is None

    assert vms["dealloc-01"].zones == ["2"]
    assert vms["stopped-01"].tags == {"Environment": "Production"}
    assert vms["app-01"].id == VM_PATH.format(sub=SUB_A, rg="rg-app", vm="app-01")
    assert vms["app-01"].location == "westeurope" and vms["app-01"].provisioning_state == "Succeeded"


# ---------------------------------------------------------------------------- 3. LROs
def test_power_off_shows_stopping_then_stopped(make_sim: Callable[..., SimHandle]) -> None:
    h = make_sim(fleet_dict(lro={"powerOff": 1.5}))
    compute = client_for(h)
    poller = compute.virtual_machines.begin_power_off("rg-app", "app-01")
    codes = statuses(compute, "rg-app", "app-01")
    assert codes == ["ProvisioningState/updating", "PowerState/stopping"]
    assert not poller.done()
    assert compute.virtual_machines.get("rg-app", "app-01").provisioning_state == "Updating"
    assert poller.result(timeout=10) is None
    assert poller.status() == "Succeeded"
    assert statuses(compute, "rg-app", "app-01") == ["ProvisioningState/succeeded", "PowerState/stopped"]


def test_lifecycle_operations_complete_through_the_poller(sim: SimHandle, compute: Any) -> None:
    vms = compute.virtual_machines
    steps = [
        (vms.begin_deallocate, "deallocated"),
        (vms.begin_start, "running"),
        (vms.begin_restart, "running"),
        (vms.begin_redeploy, "running"),
        (vms.begin_perform_maintenance, "running"),
    ]
    for begin, expected in steps:
        poller = begin("rg-app", "app-03")
        poller.result(timeout=10)
        assert poller.status() == "Succeeded", begin.__name__
        assert statuses(compute, "rg-app", "app-03") == ["ProvisioningState/succeeded", f"PowerState/{expected}"], begin.__name__
    stats = sim.stats()
    assert stats["operations_started"] == 5
    assert stats["by_operation"]["virtualMachines.deallocate"] == 1
    assert stats["by_operation"]["virtualMachines.performMaintenance"] == 1
    assert stats["by_operation"]["operations.get"] >= 10  # each op polled to the end, plus the final GET


def test_hibernate_and_skip_shutdown(sim: SimHandle, compute: Any) -> None:
    seen, hook = recorder()
    compute.virtual_machines.begin_deallocate("rg-misc", "hib-01", hibernate=True, raw_response_hook=hook).result(timeout=10)
    assert "hibernate=true" in seen[0].request.url
    assert statuses(compute, "rg-misc", "hib-01") == [
        "ProvisioningState/succeeded", "PowerState/deallocated", "HibernationState/Hibernated"]
    compute.virtual_machines.begin_start("rg-misc", "hib-01").result(timeout=10)
    assert statuses(compute, "rg-misc", "hib-01") == ["ProvisioningState/succeeded", "PowerState/running"]

    seen.clear()
    compute.virtual_machines.begin_power_off("rg-app", "app-04", skip_shutdown=True, raw_response_hook=hook).result(timeout=10)
    assert seen[0].status_code == 202 and "skipShutdown=true" in seen[0].request.url
    assert power_state(compute, "rg-app", "app-04") == "stopped"


def test_operation_completes_without_polling_it(sim: SimHandle, compute: Any) -> None:
    poller = compute.virtual_machines.begin_start("rg-misc", "dealloc-01", polling=False)
    assert poller.done()  # NoPolling: the SDK never looks at the operation
    poll_until(lambda: power_state(compute, "rg-misc", "dealloc-01") == "running", timeout=10, interval=0.05)
    ops = sim.stats()["by_operation"]
    assert ops.get("operations.get", 0) == 0
    assert ops["virtualMachines.start"] == 1
    assert compute.virtual_machines.get("rg-misc", "dealloc-01").provisioning_state == "Succeeded"


def test_lro_headers_are_absolute_and_final_location_is_200(sim: SimHandle, compute: Any, credential: Any) -> None:
    seen, hook = recorder()
    compute.virtual_machines.begin_restart("rg-app", "app-05", raw_response_hook=hook).result(timeout=10)
    first = seen[0]
    assert first.request.method == "POST" and first.status_code == 202
    aao, loc, retry = (first.headers.get(k) for k in ("Azure-AsyncOperation", "Location", "Retry-After"))
    assert aao and loc and retry
    # basic.yaml sets time.lro_retry_after (by default there is none, as from Compute)
    assert re.fullmatch(r"[1-9]\d*", retry), retry  # whole seconds: the SDK parses it as int
    for url in (aao, loc):
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == sim.url, url
        assert parts.path.startswith(f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/locations/westeurope/operations/")
        assert "api-version=2026-04-01" in parts.query
    polls = seen[1:]
    assert polls and all(r.request.method == "GET" for r in polls)
    assert all(urlsplit(r.request.url).netloc == urlsplit(sim.url).netloc for r in polls)
    assert polls[0].request.url == aao and polls[0].json()["status"] == "InProgress"
    assert polls[-2].request.url == aao and polls[-2].json()["status"] == "Succeeded"
    assert "endTime" in polls[-2].json()
    assert polls[-1].request.url == loc and polls[-1].status_code == 200

    # The same Location by hand, after the fact: 200, empty body.
    status, _, body = raw(sim, loc, token=token_of(credential))
    assert status == 200 and body is None


# ---------------------------------------------------------------------------- 4. platform rules
@pytest.mark.assumption("the 409 text for performMaintenance outside the self-service window is not established "
                        "(the not-eligible one is recorded)")
def test_perform_maintenance_not_allowed_is_synchronous_409(sim: SimHandle, compute: Any) -> None:
    with pytest.raises(ResourceExistsError) as ei:
        compute.virtual_machines.begin_perform_maintenance("rg-app", "notallowed-01")
    assert ei.value.status_code == 409
    assert ei.value.error.code == "OperationNotAllowed"
    assert "not eligible" in ei.value.error.message
    stats = sim.stats()
    assert stats["operations_started"] == 0 and stats["by_operation"].get("operations.get", 0) == 0

    with pytest.raises(ResourceExistsError) as ei:
        compute.virtual_machines.begin_perform_maintenance("rg-app", "closed-01")
    assert ei.value.status_code == 409 and ei.value.error.code == "OperationNotAllowed"
    assert "window" in ei.value.error.message
    assert power_state(compute, "rg-app", "closed-01") == "running"


@pytest.mark.assumption("isCustomerInitiatedMaintenanceAllowed turning false after a completed performMaintenance "
                        "is not established")
def test_completed_maintenance_updates_redeploy_status(compute: Any) -> None:
    before = compute.virtual_machines.instance_view("rg-app", "app-01").maintenance_redeploy_status
    assert before.is_customer_initiated_maintenance_allowed is True
    assert before.last_operation_result_code == "None"
    compute.virtual_machines.begin_perform_maintenance("rg-app", "app-01").result(timeout=10)
    after = compute.virtual_machines.instance_view("rg-app", "app-01").maintenance_redeploy_status
    assert after.last_operation_result_code == "MaintenanceCompleted"
    assert after.is_customer_initiated_maintenance_allowed is False
    # and it cannot be done twice
    with pytest.raises(ResourceExistsError):
        compute.virtual_machines.begin_perform_maintenance("rg-app", "app-01")


@pytest.mark.assumption("the 409 texts for hibernate without hibernationEnabled and for deallocating an "
                        "ephemeral-OS VM are not established (wire contract section 15)")
def test_hibernate_without_capability_and_ephemeral_deallocate_refused(sim: SimHandle, compute: Any) -> None:
    with pytest.raises(ResourceExistsError) as ei:
        compute.virtual_machines.begin_deallocate("rg-app", "app-04", hibernate=True)
    assert ei.value.status_code == 409 and ei.value.error.code == "OperationNotAllowed"
    assert "ibernation" in ei.value.error.message
    with pytest.raises(ResourceExistsError) as ei:
        compute.virtual_machines.begin_deallocate("rg-misc", "eph-01")
    assert ei.value.status_code == 409 and "ephemeral" in ei.value.error.message
    assert sim.stats()["operations_started"] == 0
    assert power_state(compute, "rg-app", "app-04") == "running"
    assert power_state(compute, "rg-misc", "eph-01") == "running"


def test_not_found_errors(sim: SimHandle, compute: Any, credential: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as ei:
        compute.virtual_machines.get("rg-app", "no-such-vm")
    assert ei.value.status_code == 404 and ei.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        compute.virtual_machines.begin_start("rg-app", "no-such-vm")
    assert ei.value.error.code == "ResourceNotFound"

    with pytest.raises(ResourceNotFoundError) as ei:
        compute.virtual_machines.get("rg-nope", "app-01")
    assert ei.value.status_code == 404 and ei.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        list(compute.virtual_machines.list("rg-nope"))
    assert ei.value.error.code == "ResourceGroupNotFound"

    other = ComputeManagementClient(credential, str(uuid.uuid4()), base_url=sim.url)
    with pytest.raises(ResourceNotFoundError) as ei:
        list(other.virtual_machines.list_all())
    assert ei.value.status_code == 404 and ei.value.error.code == "SubscriptionNotFound"
    # A VM of subscription B is not visible through subscription A.
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get("rg-b", "b-1")
    assert ComputeManagementClient(credential, SUB_B, base_url=sim.url).virtual_machines.get("rg-b", "b-1").name == "b-1"


# ---------------------------------------------------------------------------- 5. tolerance
def test_api_version_and_case_tolerance(sim: SimHandle, credential: Any) -> None:
    tok = token_of(credential)
    path = VM_PATH.format(sub=SUB_A, rg="rg-app", vm="app-01")

    status, _, body = raw(sim, path + "?api-version=2019-03-01", token=tok)
    assert status == 200 and body["name"] == "app-01"

    status, hdrs, body = raw(sim, path, token=tok)
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    assert "Retry-After" not in hdrs

    lower = f"/subscriptions/{SUB_A}/resourcegroups/RG-APP/providers/microsoft.compute/virtualmachines/APP-01"
    status, _, body = raw(sim, lower + "?api-version=2026-04-01", token=tok)
    assert status == 200 and body["name"] == "app-01" and "instanceView" not in body["properties"]

    status, _, body = raw(sim, lower + "/INSTANCEVIEW?API-VERSION=2026-04-01", token=tok)
    assert status == 200 and body["statuses"][1]["code"] == "PowerState/running"

    status, _, body = raw(sim, path + "?api-version=2026-04-01&$EXPAND=instanceview", token=tok)
    assert status == 200 and body["properties"]["instanceView"]["statuses"][1]["code"] == "PowerState/running"

    status, _, body = raw(sim, f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines"
                               "?api-version=2026-04-01&STATUSONLY=TRUE", token=tok)
    assert status == 200 and all("instanceView" in v["properties"] for v in body["value"])


# ---------------------------------------------------------------------------- 6. failed LRO
def test_failed_start_reports_allocation_failed(sim: SimHandle, compute: Any) -> None:
    compute.virtual_machines.begin_deallocate("rg-app", "app-02").result(timeout=10)
    assert power_state(compute, "rg-app", "app-02") == "deallocated"
    sim.faults({"vm": "app-02", "operation": "start", "error": "AllocationFailed", "times": 1})

    poller = compute.virtual_machines.begin_start("rg-app", "app-02")
    with pytest.raises(HttpResponseError) as ei:
        poller.result(timeout=10)
    assert ei.value.error is not None and ei.value.error.code == "AllocationFailed"
    assert "capacity" in ei.value.error.message
    assert poller.status() == "Failed"

    codes = statuses(compute, "rg-app", "app-02")
    assert codes[0] == "ProvisioningState/failed/AllocationFailed"
    assert codes[1] == "PowerState/deallocated"
    assert compute.virtual_machines.get("rg-app", "app-02").provisioning_state == "Failed"
    assert sim.control("GET", "/_sim/faults")["faults"][0]["remaining"] == 0

    compute.virtual_machines.begin_start("rg-app", "app-02").result(timeout=10)
    assert statuses(compute, "rg-app", "app-02") == ["ProvisioningState/succeeded", "PowerState/running"]


def test_network_interface_for_az_vm_list_d(sim: SimHandle, credential: Any) -> None:
    """`az vm list -d` reads each VM's NIC; the simulator serves one NIC per VM ({vm}-nic)."""
    tok = credential.get_token("https://management.azure.com/.default").token
    base = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Network/networkInterfaces"
    status, _, nic = raw(sim, f"{base}/app-01-nic?api-version=2024-05-01", token=tok)
    assert status == 200 and nic["properties"]["virtualMachine"]["id"].endswith("/virtualMachines/app-01")
    assert nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"].startswith("10.")
    status, _, err = raw(sim, f"{base}/ghost-nic?api-version=2024-05-01", token=tok)
    assert status == 404 and err["error"]["code"] == "ResourceNotFound"
