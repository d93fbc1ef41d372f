"""The inventory's join of Azure's two VM listings, and what it does when data is absent. Pure:
plain JSON as Azure sends it (a real capture of the sparse status listing among it) and a fake
FleetClient; no simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmctl.cloud.arm_json import join_listings, model_fields, status_listing, vm_from_json
from vmctl.config import Config, ProductionRule
from vmctl.inventory import complete, current_state
from vmctl.models import Vm, VmStatus, WaveBy
from vmctl.pacing import Pacer
from vmctl.planner import Options, assign_waves, build_plan, plan_from_json, plan_json, plan_step
from vmctl.selection import build_selector

SUB = "00000000-0000-0000-0000-00000000000a"
CAPTURE = Path(__file__).parent / "data" / "azure-captures" / "status_only_list.json"


def vid(name: str, rg: str = "rg-app") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def full_item(name: str, rg: str = "rg-app", tags: dict[str, str] | None = None, *, avset: str | None = None,
              ephemeral: bool = False) -> dict[str, Any]:
    """A full listing item, as Azure sends it (no instance view)."""
    props: dict[str, Any] = {"vmId": "x", "hardwareProfile": {"vmSize": "Standard_D2s_v5"}, "provisioningState": "Succeeded",
                             "storageProfile": {"osDisk": {"osType": "Linux"}}}
    if avset:
        props["availabilitySet"] = {"id": f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/availabilitySets/{avset.upper()}"}
    if ephemeral:
        props["storageProfile"]["osDisk"]["diffDiskSettings"] = {"option": "Local", "placement": "CacheDisk"}
    return {"id": vid(name, rg), "name": name, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
            "tags": tags or {}, "properties": props}


def sparse_item(name: str, rg: str = "rg-app", power: str = "running", fd: int | None = 0,
                maintenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """A statusOnly item in the real sparse shape (wire contract §15)."""
    iv: dict[str, Any] = {"statuses": [
        {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
        {"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"}]}
    if fd is not None:
        iv["platformFaultDomain"] = fd
    if maintenance:
        iv["maintenanceRedeployStatus"] = maintenance
    return {"id": vid(name, rg), "name": name, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
            "properties": {"vmId": "x", "provisioningState": "Succeeded", "hardwareProfile": {}, "instanceView": iv}}


def join(full: list[dict[str, Any]], status: list[dict[str, Any]]) -> dict[str, Vm]:
    return {vm.name: vm for vm in join_listings([model_fields(d) for d in full], status_listing(status), "sub-a")}


CONFIG = Config()
PROD = {"env": "prod"}


def test_the_real_sparse_capture_gives_power_state_and_nothing_it_does_not_carry() -> None:
    """Replayed as captured: the status item alone says nothing about tags, size or disks."""
    items = json.loads(CAPTURE.read_text())["value"]
    vms = join([], items)
    (vm,) = vms.values()
    assert vm.power_state == "running" and vm.provisioning_state == "Succeeded" and vm.fault_domain == 0
    assert vm.update_domain is None and vm.maintenance is None and not vm.maintenance_known
    # it was in no full listing: unknown tags and properties, so it counts as production
    assert vm.unreadable and CONFIG.is_production(vm)


def test_tags_size_and_disks_come_from_the_full_listing_power_from_the_status_listing() -> None:
    vms = join([full_item("web-01", tags={"app": "web"}, avset="as-web"), full_item("eph-01", ephemeral=True)],
               [sparse_item("web-01", fd=1), sparse_item("eph-01", power="stopped", fd=None)])
    web, eph = vms["web-01"], vms["eph-01"]
    assert web.tags == {"app": "web"} and web.size == "Standard_D2s_v5" and web.availability_set == "AS-WEB"
    assert web.power_state == "running" and web.fault_domain == 1 and web.update_domain is None
    assert eph.ephemeral_os_disk and eph.power_state == "stopped"
    assert not web.unreadable and not eph.unreadable
    # the sparse listing carries no maintenanceRedeployStatus anywhere: unknown, not "none pending"
    assert not web.maintenance_known and not eph.maintenance_known


def test_a_status_listing_that_carries_maintenance_for_one_vm_is_trusted_for_all() -> None:
    mrs = {"isCustomerInitiatedMaintenanceAllowed": True, "lastOperationResultCode": "None"}
    vms = join([full_item("a"), full_item("b")], [sparse_item("a", maintenance=mrs), sparse_item("b")])
    assert vms["a"].maintenance is not None and vms["a"].maintenance_known
    assert vms["b"].maintenance is None and vms["b"].maintenance_known


def test_a_vm_missing_from_the_full_listing_is_production_and_matches_no_tag_selector() -> None:
    vms = join([full_item("dev-01", tags={"env": "dev"})], [sparse_item("dev-01"), sparse_item("new-01")])
    new = vms["new-01"]
    assert new.unreadable and new.tags == {}
    assert CONFIG.is_production(new)
    # absent tags must not read as "env is not prod" or "no env tag"
    for flags in ({"tags": ["env!=prod"]}, {"tags": ["!env"]}, {"exclude_tags": ["env=prod"]}, {"tags": ["env=dev"]}):
        assert not build_selector(**flags).matches(new), flags  # type: ignore[arg-type]
    assert build_selector(tags=["env=dev"]).matches(vms["dev-01"])
    # name and group selectors still reach it, and the plan says why it is not acted on
    assert build_selector(resource_groups=["rg-app"], names=["new-*"]).matches(new)


@pytest.mark.parametrize("action", ["deallocate", "powerOff", "restart", "start"])
def test_an_unreadable_vm_is_never_acted_on_even_with_include_production(action: str) -> None:
    vm = join([], [sparse_item("new-01", power="running" if action != "start" else "deallocated")])["new-01"]
    s = plan_step(0, vm, action, Options(include_production=True))
    assert not s.acts and s.skip == "unreadable" and "could not read" in s.detail and "production" in s.detail


def test_production_rules_by_group_still_apply_and_unreadable_adds_to_them() -> None:
    cfg = Config(production_rules=(ProductionRule(resource_groups=("rg-prod*",)),))
    vms = join([full_item("a", rg="rg-prod-1"), full_item("b", rg="rg-dev")], [sparse_item("a", rg="rg-prod-1"),
                                                                               sparse_item("b", rg="rg-dev")])
    assert cfg.is_production(vms["a"]) and not cfg.is_production(vms["b"])


class Views:
    """A fake FleetClient for the completion step: instance views by VM name, or the error to raise."""

    def __init__(self, views: dict[str, VmStatus | Exception], listing: dict[str, VmStatus] | None = None) -> None:
        self.views, self.listing, self.asked = views, listing or {}, []  # type: list[str]

    def instance_view(self, subscription_id: str, resource_group: str, name: str, on_headers: Any = None) -> VmStatus:
        self.asked.append(name)
        got = self.views[name]
        if isinstance(got, Exception):
            raise got
        return got

    def list_statuses(self, subscription_id: str) -> dict[str, VmStatus]:
        return dict(self.listing)


def test_a_vm_without_a_status_is_read_from_its_instance_view_and_fails_closed_when_that_fails() -> None:
    vms = join([full_item("a"), full_item("b"), full_item("c")], [sparse_item("c")])
    client = Views({"a": VmStatus("deallocated", "Succeeded"), "b": RuntimeError("HTTP 500")})
    out = {vm.name: vm for vm in complete(client, list(vms.values()), set(), Pacer())}  # type: ignore[arg-type]
    assert sorted(client.asked) == ["a", "b"]  # c had a status: no request
    assert out["a"].power_state == "deallocated" and not out["a"].unreadable
    assert out["b"].power_state == "unknown" and out["b"].production and "could not be read" in out["b"].unreadable
    assert plan_step(0, out["b"], "deallocate", Options(include_production=True)).skip == "unreadable"


def test_maintenance_and_update_domains_are_read_only_when_a_command_needs_them() -> None:
    vms = list(join([full_item("a", avset="as"), full_item("b")], [sparse_item("a"), sparse_item("b")]).values())
    mrs = VmStatus("running", "Succeeded", update_domain=3, fault_domain=1, maintenance=None, maintenance_known=True)
    client = Views({"a": mrs, "b": mrs})
    assert complete(client, vms, set(), Pacer()) == vms and client.asked == []  # type: ignore[arg-type]
    domains = complete(client, vms, {"domains"}, Pacer())  # type: ignore[arg-type]
    assert client.asked == ["a"] and domains[0].update_domain == 3  # only the availability-set member
    client.asked.clear()
    maint = complete(client, vms, {"maintenance"}, Pacer())  # type: ignore[arg-type]
    assert sorted(client.asked) == ["a", "b"] and all(vm.maintenance_known for vm in maint)


def test_a_failed_maintenance_read_stays_unknown() -> None:
    vms = list(join([full_item("a")], [sparse_item("a")]).values())
    out = complete(Views({"a": RuntimeError("429")}), vms, {"maintenance"}, Pacer())  # type: ignore[arg-type]
    assert out[0].power_state == "running" and not out[0].maintenance_known and not out[0].unreadable


def test_current_state_reads_maintenance_only_where_the_listing_lacks_it() -> None:
    vms = list(join([full_item("a"), full_item("b")], [sparse_item("a"), sparse_item("b")]).values())
    listing = {vms[0].key: VmStatus("running", "Succeeded", maintenance_known=False),
               vms[1].key: VmStatus("running", "Succeeded", maintenance_known=True)}
    client = Views({"a": VmStatus("running", "Succeeded", maintenance_known=True), "b": RuntimeError("no")}, listing)
    cur = current_state(client, vms, Pacer(), maintenance=True)  # type: ignore[arg-type]
    assert client.asked == ["a"] and cur[vms[0].key].maintenance_known


def test_an_availability_set_member_with_an_unknown_update_domain_gets_a_wave_of_its_own() -> None:
    vms = [Vm(SUB, "rg", f"vm-{i}", vid(f"vm-{i}", "rg"), "westeurope", power_state="running",
              availability_set="as", update_domain=ud) for i, ud in enumerate([0, None, 0, None, 1])]
    steps = [plan_step(i, vm, "restart", Options()) for i, vm in enumerate(vms)]
    waves = assign_waves(steps, WaveBy(), 10)
    by_wave: dict[int, list[int]] = {}
    for s in waves:
        by_wave.setdefault(s.wave or 0, []).append(s.index)
    assert sorted(by_wave.values()) == [[0, 2], [1], [3], [4]]


def test_the_plan_file_keeps_unreadable_and_maintenance_known() -> None:
    vm = join([], [sparse_item("new-01")])["new-01"]
    plan = build_plan("deallocate", [vm], Options())
    back = plan_from_json(json.loads(json.dumps(plan_json(plan), default=str)))
    assert back.steps[0].vm.unreadable == vm.unreadable and back.steps[0].vm.maintenance_known is False


def test_get_with_expand_instance_view_knows_maintenance() -> None:
    doc = full_item("a")
    doc["properties"]["instanceView"] = sparse_item("a")["properties"]["instanceView"]
    vm = vm_from_json(doc)
    assert vm.maintenance_known and vm.maintenance is None and vm.power_state == "running"


def test_a_throttled_instance_view_read_waits_and_is_read_again() -> None:
    from vmctl.cloud import ThrottledError

    class Throttling(Views):
        def instance_view(self, subscription_id: str, resource_group: str, name: str, on_headers: Any = None) -> VmStatus:
            if self.asked.count(name) < 2:
                self.asked.append(name)
                raise ThrottledError(0.01, "429")
            return super().instance_view(subscription_id, resource_group, name, on_headers)

    vms = list(join([full_item("a")], [sparse_item("a")]).values())
    client = Throttling({"a": VmStatus("running", "Succeeded", maintenance_known=True)})
    out = complete(client, vms, {"maintenance"}, Pacer())  # type: ignore[arg-type]
    assert client.asked == ["a", "a", "a"] and out[0].maintenance_known
