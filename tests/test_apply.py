"""`vmctl apply PLAN`: a plan saved with --dry-run --plan-out (and approved) is carried out only if
the fleet still matches it; anything more is refused with nothing sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from conftest import SUB_A, SUB_B, SimHandle, poll_until
from vmctl.cli import app

runner = CliRunner()
WRITES = ("powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy")


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def writes(sim: SimHandle) -> int:
    return sum(n for k, n in sim.stats()["by_operation"].items()
               if k.startswith("virtualMachines.") and k.split(".")[1] in WRITES)


def power(sim: SimHandle, sub: str, name: str) -> str:
    r = vmctl("list", "-s", sub, "-n", name, "-o", "json")
    return str(json.loads(r.stdout)["data"][0]["powerState"])


def test_an_approved_plan_is_carried_out(sim: SimHandle, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    r = vmctl("deallocate", "-s", SUB_B, "-g", "rg-b", "--dry-run", "--plan-out", plan, "--ticket", "CHG-9")
    assert r.exit_code == 0, r.output
    assert writes(sim) == 0
    r = vmctl("apply", plan, "--yes", "--no-evidence-wait", "--report", tmp_path / "r.json", "-o", "json")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r.json").read_text())["data"]
    assert rep["verb"] == "deallocate" and rep["ticket"] == "CHG-9"  # the saved options, ticket included
    assert rep["confirmedBy"] == "plan-file"  # journaled in the run record
    assert sorted(v["name"] for v in rep["vms"] if v["outcome"] == "succeeded") == ["b-1", "b-2", "b-3"]
    assert writes(sim) == 3
    # applied again: every VM is at its target, so there is nothing to do and nothing is sent
    r = vmctl("apply", plan, "--yes", "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    assert writes(sim) == 3


def test_apply_does_the_approved_work_or_less_never_more(sim: SimHandle, tmp_path: Path) -> None:
    """b-1 was deallocated at plan time (skipped), then someone starts it; b-2 is deallocated by
    someone after the plan. Apply deallocates only b-3: b-2 is already there, b-1 was never approved."""
    sim.control("POST", "/_sim/act", {"vm": "b-1", "action": "deallocate"})
    poll_until(lambda: power(sim, SUB_B, "b-1") == "deallocated")
    plan = tmp_path / "plan.json"
    assert vmctl("deallocate", "-s", SUB_B, "-g", "rg-b", "--dry-run", "--plan-out", plan).exit_code == 0
    sim.control("POST", "/_sim/act", {"vm": "b-1", "action": "start"})
    sim.control("POST", "/_sim/act", {"vm": "b-2", "action": "deallocate"})
    poll_until(lambda: power(sim, SUB_B, "b-1") == "running" and power(sim, SUB_B, "b-2") == "deallocated")
    r = vmctl("apply", plan, "--yes", "--no-evidence-wait", "-o", "json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert {v["name"]: v["outcome"] for v in rep["vms"]} == {"b-2": "skipped", "b-3": "succeeded"}
    assert writes(sim) == 1
    assert power(sim, SUB_B, "b-1") == "running"


def test_drift_is_what_the_fresh_plan_does_beyond_the_approved_one() -> None:
    from dataclasses import replace

    from vmctl.planner import Options, build_plan
    from vmctl.safety import plan_drift

    from fakes import make_vm

    vms = [make_vm("vm0"), make_vm("vm1"), make_vm("vm2", power="deallocated")]
    approved = build_plan("deallocate", vms, Options())
    assert plan_drift(approved, approved) == []
    fewer = build_plan("deallocate", [vms[0], replace(vms[1], power_state="deallocated")], Options())
    assert plan_drift(approved, fewer) == []
    more = build_plan("deallocate", [vms[0], vms[1], replace(vms[2], power_state="running")], Options())
    assert plan_drift(approved, more) == [f"{vms[2].resource_group}/vm2 would get deallocate, but was skipped in it "
                                          "(already-in-target-state)"]
    other = build_plan("stop", vms[:2], Options())
    assert any("is for deallocate, not stop" in d for d in plan_drift(approved, other))
    refused = replace(approved, refusals=("too many",))
    assert plan_drift(refused, approved) == ["the approved plan was refused (too many)"]


def test_production_in_the_plan_needs_include_production_again(sim: SimHandle, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    r = vmctl("start", "-s", SUB_A, "-g", "rg-misc", "-n", "dealloc-01", "--include-production", "--dry-run",
              "--plan-out", plan)
    assert r.exit_code == 0, r.output
    r = vmctl("apply", plan, "--yes", "--no-evidence-wait")
    assert r.exit_code == 4 and "--include-production" in r.output, r.output
    assert writes(sim) == 0


def test_a_refused_plan_is_never_applied(sim: SimHandle, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    r = vmctl("stop", "-s", SUB_B, "-g", "rg-b", "--dry-run", "--plan-out", plan)  # no --keep-allocation
    assert r.exit_code == 4, r.output
    r = vmctl("apply", plan, "--yes")
    assert r.exit_code == 4 and "refused by a guard" in r.output, r.output
    assert writes(sim) == 0


def test_a_file_that_is_not_a_plan_is_bad_input(sim: SimHandle, tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    r = vmctl("apply", bad, "--yes")
    assert r.exit_code == 2 and "is not a vmctl plan" in r.output, r.output
    r = vmctl("apply", tmp_path / "missing.json", "--yes")
    assert r.exit_code == 2 and "cannot read plan" in r.output, r.output


def test_how_a_run_was_confirmed_is_journaled() -> None:
    """safety.confirm says how the operator said go; the run record keeps it for the report."""
    from vmctl.planner import Options, build_plan
    from vmctl.safety import confirm

    from fakes import make_vm

    plan = build_plan("restart", [make_vm("vm0")], Options())
    assert confirm(plan, True, False, lambda _: "") == "yes-flag"
    assert confirm(plan, False, True, lambda _: "y") == "prompt"
    prod = build_plan("restart", [make_vm("vm0", production=True)], Options(include_production=True))
    assert confirm(prod, False, True, lambda _: "1") == "typed-count"
