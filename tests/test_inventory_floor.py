"""What the inventory's per-VM fast paths must keep: shared statuses are equal values, the join
neither loses nor invents a VM nor changes its input, production rules decide as `Vm.tag` reads
tags. Pure: plain JSON and models."""

from __future__ import annotations

import itertools
from typing import Any

from vmctl.cloud.arm_json import join_listings, model_fields, status_from_view, status_listing
from vmctl.config import ProductionRule
from vmctl.models import Vm

SUB = "00000000-0000-0000-0000-00000000000a"


def vid(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/{name}"


def view(power: str, fd: int | None = 0, **extra: Any) -> dict[str, Any]:
    iv: dict[str, Any] = {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": f"PowerState/{power}"}], **extra}
    if fd is not None:
        iv["platformFaultDomain"] = fd
    return iv


def test_equal_statuses_are_one_object_and_different_ones_are_not() -> None:
    a, b = status_from_view(view("running")), status_from_view(view("running"))
    assert a is b and a.power_state == "running" and a.provisioning_state == "Succeeded" and a.fault_domain == 0
    assert status_from_view(view("running", fd=1)) is not a and status_from_view(view("running", fd=1)).fault_domain == 1
    assert status_from_view(view("stopped")).power_state == "stopped"
    assert status_from_view(view("running"), maintenance_known=False) != a  # another source: another value
    hib = status_from_view({"statuses": [{"code": "PowerState/deallocated"}, {"code": "HibernationState/Hibernated"}]})
    assert hib.hibernated and hib.power_state == "deallocated"
    pending = {"isCustomerInitiatedMaintenanceAllowed": True}
    m1, m2 = status_from_view(view("running", maintenanceRedeployStatus=pending)), \
        status_from_view(view("running", maintenanceRedeployStatus=pending))
    assert m1 == m2 and m1 is not m2 and m1.maintenance is not None and m1.maintenance.allowed
    odd = status_from_view(view("running", fd=None, platformUpdateDomain=[1]))  # not a number: not shared, still read
    assert odd.update_domain == [1] and odd.power_state == "running"


def full(name: str) -> dict[str, Any]:
    return {"id": vid(name), "name": name, "location": "westeurope", "tags": {"app": name},
            "properties": {"provisioningState": "Succeeded", "hardwareProfile": {"vmSize": "Standard_D2s_v5"}}}


def status(name: str, power: str) -> dict[str, Any]:
    return {"id": vid(name).upper(), "name": name, "location": "westeurope",
            "properties": {"provisioningState": "Succeeded", "instanceView": view(power)}}


def test_the_join_keeps_every_vm_once_per_listing_entry_and_leaves_its_input_alone() -> None:
    statuses = status_listing([status("a", "running"), status("b", "stopped"), status("only", "running")])
    before = dict(statuses)
    vms = join_listings([model_fields(full("a")), model_fields(full("b")), model_fields(full("a")),
                         model_fields(full("new"))], statuses, "sub")
    assert statuses == before  # the caller's status listing is not consumed
    assert [(v.name, v.power_state) for v in vms] == [("a", "running"), ("b", "stopped"), ("a", "running"),
                                                     ("new", "unknown"), ("only", "running")]
    a, new, only = vms[0], vms[3], vms[4]
    assert a.tags == {"app": "a"} and a.size == "Standard_D2s_v5" and a.subscription_name == "sub" and not a.unreadable
    assert a.subscription_id == SUB and a.resource_group == "rg-a" and a.location == "westeurope"
    assert not new.unreadable and new.power_state == "unknown"  # its status is read from its instance view later
    assert only.unreadable and only.resource_group == "RG-A" and only.name == "only" and only.tags == {}


def reference_tag_hit(rule: ProductionRule, vm: Vm) -> bool:
    """The rule's tag condition as it was written before its names and values were lowered once."""
    wanted = {v.lower() for v in rule.values}
    for t in rule.tags:
        value = vm.tag(t)
        if value is not None and (not wanted or value.lower() in wanted):
            return True
    return False


def test_production_rules_decide_as_vm_tag_reads_tags() -> None:
    rules = [ProductionRule(tags=("env", "Environment"), values=("prod", "PRODUCTION")),
             ProductionRule(tags=("critical",)), ProductionRule(tags=("ENV",), values=("prod",), resource_groups=("rg-*",))]
    tag_sets = [{}, {"env": "prod"}, {"Env": "Prod"}, {"ENV": "dev", "env": "prod"}, {"env": "prod", "ENV": "dev"},
                {"environment": "production"}, {"critical": ""}, {"Critical": "no"}, {"app": "prod"}]
    for rule, tags in itertools.product(rules, tag_sets):
        vm = Vm(SUB, "rg-a", "x", vid("x"), "westeurope", tags=tags)
        expected = reference_tag_hit(rule, vm) and (not rule.resource_groups or vm.resource_group.startswith("rg-"))
        assert rule.matches(vm) == expected, (rule, tags)
