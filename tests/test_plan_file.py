"""The saved plan is lossless: every field of every kind of VM in the demo fleet comes back from
plan JSON exactly (the display form beside it rounds some facts off)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from conftest import SimHandle
from vmctl.cloud import Connection, make_client
from vmctl.config import Config
from vmctl.inventory import load_inventory
from vmctl.pacing import Pacer
from vmctl.planner import Options, build_plan, plan_from_json, plan_json
from vmctl.selection import Selector

DEMO = Path(__file__).parents[1] / "examples" / "fleet.yaml"
SUBS = ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"]


def test_every_vm_of_the_demo_fleet_round_trips_through_the_plan_file(make_sim: Callable[..., SimHandle]) -> None:
    sim = make_sim(DEMO)
    client = make_client(Connection(arm_endpoint=sim.url))
    inv = load_inventory(client, SUBS, Selector(), Config(), needs=("maintenance", "domains"), pacer=Pacer(scale=100))
    vms = list(inv.vms)
    # the kinds the display form used to lose: Low priority, a scale set's name, the OS type
    vms.append(replace(vms[0], id=vms[0].id + "-low", name=vms[0].name + "-low", priority="Low",
                       scale_set="vmss-batch", os_type="Windows", unreadable="not in the full VM listing",
                       maintenance_known=False))
    kinds = {(vm.priority, bool(vm.scale_set), vm.ephemeral_os_disk, vm.hibernation_enabled, vm.maintenance is not None,
              bool(vm.availability_set), bool(vm.zones), vm.power_state) for vm in vms}
    assert len(kinds) >= 8, kinds  # the demo fleet's variety is really exercised
    plan = build_plan("deallocate", vms, Options(include_production=True, max_targets=100))
    back = plan_from_json(json.loads(json.dumps(plan_json(plan), default=str)))
    assert len(back.steps) == len(plan.steps)
    for before, after in zip(plan.steps, back.steps):
        assert asdict(after.vm) == asdict(before.vm), before.vm.name  # tags and maintenance included
        assert after == before
    assert back.options == plan.options and back.totals == plan.totals and back.set_sizes == plan.set_sizes


def test_wave_mode_is_a_typed_value_saved_as_the_flag_text() -> None:
    """--wave-by is parsed once into WaveBy; the plan file keeps the operator's text (tag:ring) and
    reads it back to the same value."""
    from vmctl.models import WaveBy

    assert WaveBy.parse("update-domain") == WaveBy() and WaveBy.parse("none") == WaveBy("none")
    ring = WaveBy.parse("tag:ring")
    assert (ring.mode, ring.key, str(ring)) == ("tag", "ring", "tag:ring")
    for bad in ("tag:", "tags:ring", "", "UD", "update_domain"):
        try:
            WaveBy.parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    plan = build_plan("maintenance start", [], Options(wave_by=ring, hibernate_fallback="deallocate"))
    doc = json.loads(json.dumps(plan_json(plan)))
    assert doc["options"]["wave_by"] == "tag:ring"
    assert plan_from_json(doc).options == plan.options
