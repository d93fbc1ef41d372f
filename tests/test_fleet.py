"""Fleet files: the user-facing YAML format, its generators and its error messages (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vmctl.simulator.fleet import DEFAULT_LRO_SECONDS, FleetError, load_fleet, parse_duration

EXAMPLES = Path(__file__).parents[1] / "examples"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def fleet(**overrides: object) -> dict:
    base: dict = {"subscriptions": [{"id": "00000000-0000-0000-0000-000000000001", "name": "s",
                                     "resource_groups": [{"name": "rg", "vms": [{"name": "a"}]}]}]}
    base.update(overrides)
    return base


def test_example_fleet_is_what_the_readme_promises() -> None:
    f = load_fleet(EXAMPLES / "fleet.yaml", now=NOW)
    assert 35 <= len(f.vms) <= 45
    assert len(f.subscriptions) == 2
    tags = [{k: v for k, v in vm.tags.items()} for vm in f.vms]
    assert any("env" in t and t["env"] == "prod" for t in tags)
    assert any(t.get("Environment") == "Production" for t in tags)
    assert {vm.tags.get("env") for vm in f.vms} >= {"dev", "test"}
    sets = {a.name: a for a in f.availability_sets}
    assert len(sets) == 2 and all(a.update_domains == 3 for a in sets.values())
    assert sum(1 for vm in f.vms if vm.ephemeral_os_disk) == 1
    assert sum(1 for vm in f.vms if vm.hibernation_enabled) == 1
    assert sum(1 for vm in f.vms if vm.priority == "Spot") == 1
    assert sum(1 for vm in f.vms if vm.scale_set) >= 1
    assert sum(1 for vm in f.vms if vm.power_state == "stopped") >= 3
    maint = [vm.maintenance for vm in f.vms if vm.maintenance]
    assert any(m.allowed for m in maint) and any(not m.allowed for m in maint)
    assert any(m.self_service_window and m.self_service_window[1] < NOW for m in maint)


def test_generator_expands_names_and_assigns_domains_round_robin() -> None:
    f = load_fleet(fleet(subscriptions=[{
        "id": "00000000-0000-0000-0000-000000000001",
        "resource_groups": [{"name": "rg", "availability_sets": [{"name": "as", "update_domains": 3, "fault_domains": 2}],
                             "vms": [{"name": "web-{i:02d}", "count": 4, "availability_set": "as"}]}]}]), now=NOW)
    assert [(v.name, v.update_domain, v.fault_domain) for v in f.vms] == [
        ("web-01", 0, 0), ("web-02", 1, 1), ("web-03", 2, 0), ("web-04", 0, 1)]


def test_relative_and_absolute_windows() -> None:
    f = load_fleet(fleet(subscriptions=[{
        "id": "00000000-0000-0000-0000-000000000001",
        "resource_groups": [{"name": "rg", "vms": [{"name": "a", "maintenance": {
            "allowed": True, "self_service_window": ["-1d", "6h"], "scheduled_window": ["2026-12-01T00:00:00Z", "2026-12-02"]}}]}]}]),
        now=NOW)
    m = f.vms[0].maintenance
    assert m is not None and m.self_service_window == (NOW - timedelta(days=1), NOW + timedelta(hours=6))
    assert m.scheduled_window is not None and m.scheduled_window[0] == datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("text,seconds", [("90", 90), ("45s", 45), ("30m", 1800), ("-1d", -86400), ("2h", 7200), (1.5, 1.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("data,message", [
    (fleet(subscriptions=[]), "at least one subscription"),
    (fleet(subscriptions=[{"id": "not-a-guid"}]), "subscriptions[0].id: a subscription id is a GUID"),
    (fleet(colour="red"), "unknown key 'colour'"),
    (fleet(subscriptions=[{"id": "00000000-0000-0000-0000-000000000001",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "a", "power_state": "sleeping"}]}]}]),
     "vms[0].power_state"),
    (fleet(subscriptions=[{"id": "00000000-0000-0000-0000-000000000001",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "a", "availability_set": "nope"}]}]}]),
     "'nope' is not defined"),
    (fleet(subscriptions=[{"id": "00000000-0000-0000-0000-000000000001",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "a"}, {"name": "A"}]}]}]),
     "used twice"),
    (fleet(subscriptions=[{"id": "00000000-0000-0000-0000-000000000001",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "web", "count": 3}]}]}]),
     "does not make unique names"),
    (fleet(time={"lro_seconds": {"explode": 3}}), "unknown operation 'explode'"),
    (fleet(faults=[{"vm": "a", "times": 0}]), "faults[0].times"),
    (fleet(platform={"status_only_items": "rich"}), "platform.status_only_items: expected sparse or full"),
    (fleet(platform={"maintenance_in_status_list": "yes"}), "platform.maintenance_in_status_list: expected true or false"),
    (fleet(platform={"busy_vm": {"default": "queue"}}), "platform.busy_vm.default: expected preempt or refuse"),
    (fleet(platform={"busy_vm": {"start after stop": "refuse"}}), 'use default or "<new> over <running>"'),
    (fleet(platform={"busy_vm": {"start over explode": "refuse"}}), "unknown operation 'explode'"),
    (fleet(platform={"busy_vm": {"start over powerOff": "wait"}}), 'platform.busy_vm."start over powerOff": expected'),
    (fleet(platform={"colour": 1}), "platform: unknown key 'colour'"),
    (fleet(time={"jitter": 1.5}), "time.jitter: expected a number from 0 up to (not including) 1"),
    (fleet(time={"seed": "abc"}), "time.seed: expected a whole number"),
    (fleet(time={"lro_retry_after": 0}), "time.lro_retry_after: expected a positive number"),
    (fleet(subscriptions=[{"id": "00000000-0000-0000-0000-000000000001",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "a", "maintenance": {
                               "allowed": True, "self_service_window": ["2d", "1d"]}}]}]}]), "ends before it starts"),
])
def test_bad_fleets_name_the_place_and_the_fix(data: dict, message: str) -> None:
    with pytest.raises(FleetError) as err:
        load_fleet(data, now=NOW)
    assert message in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="cannot read fleet file"):
        load_fleet(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("subscriptions: [\n")
    with pytest.raises(FleetError, match="not valid YAML"):
        load_fleet(bad)


def test_defaults_are_azure_true() -> None:
    f = load_fleet(fleet(), now=NOW)
    p = f.platform
    assert (p.status_only_items, p.maintenance_in_status_list, p.busy_default) == ("sparse", False, "preempt")
    assert f.lro_retry_after is None  # no Retry-After header
    assert f.jitter == 0.25 and f.seed is None
    assert f.activity_log_delay_seconds == 240  # Microsoft: 3 to 20 minutes; 240 s +- 25 % stays inside
    assert f.lro_seconds == DEFAULT_LRO_SECONDS
    assert DEFAULT_LRO_SECONDS == {"powerOff": 15, "deallocate": 35, "start": 35, "restart": 45,
                                   "performMaintenance": 110, "redeploy": 110}


def test_platform_options() -> None:
    f = load_fleet(fleet(platform={
        "status_only_items": "Full", "maintenance_in_status_list": True,
        "busy_vm": {"default": "refuse", "start over deallocate": "preempt", "RESTART over poweroff": "refuse"}},
        time={"jitter": 0, "seed": 42, "lro_retry_after": 0.05}), now=NOW)
    p = f.platform
    assert (p.status_only_items, p.maintenance_in_status_list) == ("full", True)
    assert p.busy_mode("start", "deallocate") == "preempt"
    assert p.busy_mode("restart", "powerOff") == "refuse"
    assert p.busy_mode("powerOff", "start") == "refuse"  # the default
    assert (f.jitter, f.seed, f.lro_retry_after) == (0, 42, 0.05)
