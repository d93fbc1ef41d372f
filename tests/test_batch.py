"""The batch engine end to end: CLI -> the real azure-mgmt-computeschedule client -> the simulator.

Chunking at 100, a failed VM among successes, per-VM OperationConflict, a lost reply never sent
twice, Ctrl-C cancelling what has not started (a real process and a signal), resume by
operationId (no resend: the simulator's /_sim/stats counts every request), the same guards as the
ARM engine, and the refusals (exit 2, no write) of --engine batch where ComputeSchedule has no
action and of a retryPolicy out of range.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from conftest import SUB_A, SimHandle, poll_until
from ptyrun import wait_or_kill
from test_signals import of_type, records, spawn
from vmctl.cli import app

runner = CliRunner()
Make = Callable[..., SimHandle]
SCALE = 50.0   # 35 s operations take 0.7 s; a status round (15 s) 0.3 s
LOC = "westeurope"


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def fleet(n: int, *, power: str = "running", prod: int = 0, faults: list[dict[str, Any]] | None = None,
          lro: float | None = None) -> dict[str, Any]:
    vms: list[dict[str, Any]] = [{"name": "vm-{i:03d}", "count": n, "start": 0, "power_state": power,
                                  "tags": {"env": "dev"}}]
    if prod:
        vms.append({"name": "p-{i}", "count": prod, "power_state": power, "tags": {"env": "prod"}})
    t: dict[str, Any] = {"activity_log_delay_seconds": 1, "jitter": 0}
    if lro is not None:
        t["lro_seconds"] = {"deallocate": lro, "start": lro}
    return {"tenant_id": "11111111-0000-0000-0000-000000000000", "identity": {"upn": "tester@contoso.example"},
            "time": t, "faults": faults or [],
            "subscriptions": [{"id": SUB_A, "name": "sub-a", "resource_groups": [
                {"name": "rg-b", "location": LOC, "vms": vms}]}]}


def vm_id(name: str) -> str:
    return f"/subscriptions/{SUB_A}/resourceGroups/rg-b/providers/Microsoft.Compute/virtualMachines/{name}"


def ops(sim: SimHandle) -> dict[str, int]:
    return dict(sim.stats()["by_operation"])


def report(r: Any) -> dict[str, Any]:
    doc = json.loads(r.stdout)
    assert doc["kind"] == "run-report", doc
    return dict(doc["data"])


def by_name(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rep["vms"]}


def journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def power_states(sim: SimHandle) -> dict[str, str]:
    r = vmctl("list", "-g", "rg-b", "-o", "json")
    assert r.exit_code == 0, r.output
    return {v["name"]: v["powerState"] for v in json.loads(r.stdout)["data"]}


# ============================================================================ on plain data
def test_chunks_group_by_subscription_region_and_operation_in_plan_order_at_most_100() -> None:
    from vmctl.batch import chunks, resolve_engine
    from vmctl.models import Step, Vm

    def step(i: int, sub: str, loc: str, hibernate: bool = False) -> Step:
        vm = Vm(sub, "rg", f"v{i}", f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/"
                f"virtualMachines/v{i}", loc)
        return Step(i, vm, "deallocate", hibernate=hibernate)

    steps = [step(i, "s1", "westeurope") for i in range(150)] + [step(150, "s2", "westeurope"),
                                                                 step(151, "s1", "WestEurope", hibernate=True),
                                                                 step(152, "s1", "eastus")]
    got = [(c.subscription_id, c.location, c.op_type, len(c.indexes)) for c in chunks(steps)]
    assert got == [("s1", "westeurope", "Deallocate", 100), ("s1", "westeurope", "Deallocate", 50),
                   ("s2", "westeurope", "Deallocate", 1), ("s1", "WestEurope", "Hibernate", 1),
                   ("s1", "eastus", "Deallocate", 1)]
    assert [c.number for c in chunks(steps)] == [1, 2, 3, 4, 5]
    assert [len(c.indexes) for c in chunks(steps[:150], size=40)] == [40, 40, 40, 30]  # --parallel 40
    assert resolve_engine("auto", "deallocate", 49, 50, False)[0] == "arm"
    assert resolve_engine("auto", "start", 50, 50, False)[0] == "batch"
    assert resolve_engine("auto", "start", 500, 50, True) == ("arm", "auto: hooks run per VM around each request")
    assert resolve_engine("auto", "restart", 500, 50, False)[0] == "arm"


# ============================================================================ chunks, outcomes, evidence
@pytest.mark.assumption("the Activity Log caller of ComputeSchedule's VM operations, and the delay between "
                        "retry attempts (how many fit in the retry window): not established")
def test_150_vms_go_in_two_requests_and_a_failed_vm_is_its_own_outcome(make_sim: Make, tmp_path: Path) -> None:
    sim = make_sim(fleet(150, faults=[{"vm": "vm-007", "operation": "deallocate", "error": "AllocationFailed",
                                       "times": "always"}]), time_scale=SCALE)
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "--all", "--engine", "batch", "--yes", "--max-targets", "200", "--retry-count", "1",
              "--retry-window", "5", "--evidence-wait", "60s", "-o", "json", "--journal", j)
    assert r.exit_code == 3, r.output
    rep = report(r)
    assert rep["engine"] == "batch" and rep["summary"]["succeeded"] == 149 and rep["summary"]["failed"] == 1
    bad = by_name(rep)["vm-007"]
    assert bad["outcome"] == "failed" and bad["reason"].startswith("(AllocationFailed)") and bad["retries"] == 1
    assert "2 attempts (retryPolicy)" in bad["reason"]
    st = sim.stats()
    assert st["by_operation"]["computeSchedule.executeDeallocate"] == 2 and st["schedule_operations"] == 150
    assert "virtualMachines.deallocate" not in st["by_operation"]  # nothing went through ARM's VM actions
    assert st["throttled"] == 0
    recs = journal(j)
    kinds = [x["type"] for x in recs if x["type"] in ("chunk", "chunk-accepted")]
    assert kinds == ["chunk", "chunk-accepted", "chunk", "chunk-accepted"]  # every id journaled before the next
    chunks = of_type(recs, "chunk")
    assert [len(c["indexes"]) for c in chunks] == [100, 50] and chunks[0]["correlationId"] != chunks[1]["correlationId"]
    assert chunks[0]["retryPolicy"] == {"retryCount": 1, "retryWindowInMinutes": 5}
    accepted = {int(k): v for c in of_type(recs, "chunk-accepted") for k, v in c["operations"].items()}
    assert len(accepted) == 150 and len(set(accepted.values())) == 150
    outcomes = {o["index"]: o for o in of_type(recs, "outcome")}
    assert all(outcomes[i]["operationId"] == op for i, op in accepted.items())
    assert {v["correlationId"] for v in rep["vms"]} == {c["correlationId"] for c in chunks}
    # the Activity Log's record of each VM operation: ComputeSchedule's, found by VM and action
    ev = by_name(rep)["vm-000"]["evidence"]
    assert ev["complete"] and ev["caller"] == "Microsoft.ComputeSchedule"
    assert ev["operationName"] == "Microsoft.Compute/virtualMachines/deallocate/action"
    assert by_name(rep)["vm-007"]["evidence"]["statuses"].count("Failed") == 2
    assert by_name(rep)["vm-000"]["after"] == "deallocated" and bad["after"] == "running"


def test_the_plan_shows_the_engine_and_its_requests_and_a_dry_run_sends_nothing(make_sim: Make,
                                                                               tmp_path: Path) -> None:
    sim = make_sim(fleet(150), time_scale=SCALE)
    cfg = tmp_path / "vmctl.toml"
    cfg.write_text("[execution]\nbatch_threshold = 100\n", encoding="utf-8")
    r = vmctl("deallocate", "--all", "--dry-run", "--max-targets", "200", "--config", cfg, "-o", "json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)["data"]
    assert plan["options"]["engine"] == "batch" and plan["options"]["retry_count"] == 3
    assert [len(c["steps"]) for c in plan["chunks"]] == [100, 50]
    assert {(c["location"], c["opType"]) for c in plan["chunks"]} == {(LOC, "Deallocate")}
    table = vmctl("deallocate", "--all", "--dry-run", "--max-targets", "200", "--config", cfg)
    assert "Engine: batch (ComputeSchedule, auto: 150 VMs, at or above the batch threshold of 100): 150 VMs in 2 " \
           "requests of at most 100" in table.stdout
    assert "sub-a / westeurope: Deallocate 150 VMs in 2 requests (100, 50)" in table.stdout
    small = vmctl("deallocate", "-n", "vm-00*", "--dry-run", "--config", cfg)
    assert "Engine: arm (auto: 10 VMs, below the batch threshold of 100): one request per VM." in small.stdout
    assert sim.stats()["writes"] == 0


def test_a_vm_with_a_pending_operation_gets_operation_conflict_as_its_outcome(make_sim: Make) -> None:
    """Another client's ComputeSchedule start on vm-001 is still pending (held Blocked): vmctl's
    start of it is refused per VM (OperationConflict), the other VMs start."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.computeschedule import ComputeScheduleMgmtClient
    from azure.mgmt.computeschedule import models as m

    sim = make_sim(fleet(3, power="deallocated", faults=[{"vm": "vm-001", "operation": "start", "error": "Blocked",
                                                          "times": 1, "delay_seconds": 6000}]), time_scale=SCALE)
    other = ComputeScheduleMgmtClient(DefaultAzureCredential(), SUB_A, base_url=sim.url)
    other.scheduled_actions.virtual_machines_execute_start(LOC, m.ExecuteStartRequest(
        execution_parameters=m.ExecutionParameters(), resources=m.Resources(ids=[vm_id("vm-001")]),
        correlationid=str(uuid.uuid4())))
    r = vmctl("start", "--all", "--engine", "batch", "--yes", "--no-evidence-wait", "-o", "json")
    assert r.exit_code == 3, r.output
    vms = by_name(report(r))
    assert vms["vm-001"]["outcome"] == "failed" and vms["vm-001"]["reason"].startswith("(OperationConflict)")
    assert vms["vm-001"]["operationId"] is None and vms["vm-001"]["evidence"] is None
    assert (vms["vm-000"]["outcome"], vms["vm-002"]["outcome"]) == ("succeeded", "succeeded")


def test_a_lost_reply_to_execute_is_never_sent_twice(make_sim: Make, tmp_path: Path) -> None:
    """The request landed, its answer is lost (a 504 after ComputeSchedule accepted it): the VMs
    show nothing yet, so they are sent once more, and ComputeSchedule's OperationConflict says the
    first request holds them: watched by their state, one operation each."""
    sim = make_sim(fleet(4, faults=[{"operation": "computeSchedule.executeDeallocate", "error": "504-after-accept",
                                     "times": 1}]), time_scale=SCALE)
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "--all", "--engine", "batch", "--yes", "--no-evidence-wait", "-o", "json", "--journal", j)
    assert r.exit_code == 0, r.output
    assert {v["outcome"] for v in report(r)["vms"]} == {"succeeded"}
    st = sim.stats()
    assert st["schedule_operations"] == 4 and st["operations_started"] == 4  # one VM operation each
    assert st["by_operation"]["computeSchedule.executeDeallocate"] == 2
    recs = journal(j)
    assert len(of_type(recs, "chunk-lost")) == 1 and of_type(recs, "resend")[0]["indexes"] == [0, 1, 2, 3]
    assert set(of_type(recs, "chunk-accepted")[0]["refused"].values()) and \
        all(v.startswith("(OperationConflict)") for v in of_type(recs, "chunk-accepted")[0]["refused"].values())
    assert len(of_type(recs, "confirmed-by-state")) == 4


def test_hibernate_and_its_fallback_go_in_requests_of_their_own(make_sim: Make, tmp_path: Path) -> None:
    f = fleet(2)
    f["subscriptions"][0]["resource_groups"][0]["vms"][0]["hibernation"] = True
    f["subscriptions"][0]["resource_groups"][0]["vms"].append({"name": "plain-1"})
    sim = make_sim(f, time_scale=SCALE)
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "--all", "--hibernate", "--hibernate-fallback", "deallocate", "--engine", "batch", "--yes",
              "--no-evidence-wait", "-o", "json", "--journal", j)
    assert r.exit_code == 0, r.output
    assert sorted((c["opType"], len(c["indexes"])) for c in of_type(journal(j), "chunk")) == [("Deallocate", 1),
                                                                                            ("Hibernate", 2)]
    st = ops(sim)
    assert st["computeSchedule.executeHibernate"] == 1 and st["computeSchedule.executeDeallocate"] == 1
    listed = json.loads(vmctl("list", "-g", "rg-b", "-o", "json").stdout)["data"]
    assert {v["name"]: (v["powerState"], v["hibernated"]) for v in listed} == {
        "vm-000": ("deallocated", True), "vm-001": ("deallocated", True), "plain-1": ("deallocated", False)}


def test_blocked_past_the_deadline_and_retry_window_is_said_in_the_outcome(make_sim: Make) -> None:
    """ComputeSchedule holds vm-001's operation Blocked (an outage): vmctl waits for it until the
    request's deadline plus its retry window (here none: --retry-count 0), then says so."""
    make_sim(fleet(3, faults=[{"vm": "vm-001", "operation": "deallocate", "error": "Blocked", "times": "always",
                               "delay_seconds": 6000}]), time_scale=SCALE)
    r = vmctl("deallocate", "--all", "--engine", "batch", "--retry-count", "0", "--yes", "--no-evidence-wait",
              "-o", "json")
    assert r.exit_code == 3, r.output
    vms = by_name(report(r))
    assert vms["vm-001"]["outcome"] == "unknown" and "Blocked past its deadline and retry window (0 min)" in \
        vms["vm-001"]["reason"]
    assert vms["vm-001"]["operationId"] and vms["vm-001"]["after"] == "running"
    assert vms["vm-000"]["outcome"] == vms["vm-002"]["outcome"] == "succeeded"


# ============================================================================ guards and refusals
def test_guards_are_the_arm_engines_production_is_never_acted_on_by_yes_alone(make_sim: Make,
                                                                              tmp_path: Path) -> None:
    sim = make_sim(fleet(3, prod=2), time_scale=SCALE)
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "--all", "--engine", "batch", "--yes", "--no-evidence-wait", "-o", "json", "--journal", j)
    assert r.exit_code == 0, r.output
    rep = report(r)
    vms = by_name(rep)
    assert all(vms[n]["skip"] == "production" and vms[n]["outcome"] == "skipped" for n in ("p-1", "p-2"))
    assert all(vms[f"vm-00{i}"]["outcome"] == "succeeded" for i in range(3))
    (chunk,) = of_type(journal(j), "chunk")  # the production VMs are in no request
    assert sorted(rep["vms"][i]["name"] for i in chunk["indexes"]) == ["vm-000", "vm-001", "vm-002"]
    assert power_states(sim)["p-1"] == "running" and power_states(sim)["p-2"] == "running"
    sim.reset("stats")
    r = vmctl("deallocate", "-n", "p-*", "--engine", "batch", "--include-production")
    assert r.exit_code == 2 and "--include-production --yes" in r.stderr
    assert sim.stats()["writes"] == 0


@pytest.mark.parametrize("args, words", [
    (["restart", "-g", "rg-b", "--engine", "batch"], "`vmctl restart` has no batch engine"),
    (["stop", "-g", "rg-b", "--keep-allocation", "--engine", "batch"], "`vmctl stop` has no batch engine"),
    (["deallocate", "-g", "rg-b", "--engine", "fast"], "--engine 'fast' is not arm, batch or auto"),
    (["deallocate", "-g", "rg-b", "--retry-count", "8"], "--retry-count 8 is outside 0-7"),
    (["start", "-g", "rg-b", "--retry-window", "4"], "--retry-window 4 is outside 5-120"),
    (["deallocate", "-g", "rg-b", "--retry-window", "121"], "--retry-window 121 is outside 5-120"),
    (["deallocate", "-g", "rg-b", "--engine", "batch", "--pre-hook", "true"], "the batch engine sends up to 100"),
])
def test_refused_with_exit_2_and_no_write(make_sim: Make, args: list[str], words: str) -> None:
    sim = make_sim(fleet(3), time_scale=SCALE)
    r = vmctl(*args, "--yes")
    assert r.exit_code == 2, r.output
    assert words in r.stderr
    assert sim.stats()["writes"] == 0


def test_a_retry_policy_out_of_range_in_the_config_is_refused_before_any_request(make_sim: Make,
                                                                                 tmp_path: Path) -> None:
    sim = make_sim(fleet(3), time_scale=SCALE)
    cfg = tmp_path / "vmctl.toml"
    cfg.write_text("[execution]\nretry_count = 9\n", encoding="utf-8")
    r = vmctl("deallocate", "-g", "rg-b", "--engine", "batch", "--yes", "--config", cfg)
    assert r.exit_code == 2 and "execution.retry_count must be a whole number from 0 to 7" in r.stderr
    assert sim.stats()["requests"] == 0


# ============================================================================ signals and resume
def test_ctrl_c_cancels_what_has_not_started_and_resume_sends_it_again(make_sim: Make, tmp_path: Path) -> None:
    """Every operation is held Blocked (not started): SIGINT sends CancelOperations, journals it,
    and the VMs end `cancelled` (exit 130), untouched. `vmctl resume` then sends them again."""
    sim = make_sim(fleet(5, faults=[{"operation": "deallocate", "error": "Blocked", "times": "always",
                                     "delay_seconds": 6000}]), time_scale=SCALE)
    j, rep_path = tmp_path / "run.jsonl", tmp_path / "r.json"
    proc, err = spawn(tmp_path, "deallocate", "--all", "--engine", "batch", "--yes", "--no-evidence-wait",
                      "--journal", j, "--report", rep_path)
    try:
        poll_until(lambda: j.exists() and of_type(records(j), "chunk-accepted"), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    assert wait_or_kill(proc) == 130, err.read_text()
    recs = records(j)
    (cancel,) = of_type(recs, "cancel")
    assert set(cancel["states"].values()) == {"Cancelled"} and len(cancel["operations"]) == 5
    assert {o["status"] for o in of_type(recs, "outcome")} == {"cancelled"}
    assert of_type(recs, "interrupted")[0]["signal"] == "SIGINT"
    assert sim.stats()["by_operation"]["computeSchedule.cancelOperations"] == 1
    assert set(power_states(sim).values()) == {"running"}
    rep = json.loads(rep_path.read_text())["data"]
    assert rep["interrupted"] and rep["exitCode"] == 130 and rep["summary"]["cancelled"] == 5
    # resume: cancelled before they started, so sent again (once the block is gone)
    sim.control("DELETE", "/_sim/faults")
    r = vmctl("resume", j, "--yes", "--no-evidence-wait", "-o", "json")
    assert r.exit_code == 0, r.output
    assert {v["outcome"] for v in report(r)["vms"]} == {"succeeded"}
    assert sim.stats()["by_operation"]["computeSchedule.executeDeallocate"] == 2
    assert set(power_states(sim).values()) == {"deallocated"}


def test_resume_reattaches_by_operation_id_and_sends_nothing_again(make_sim: Make, tmp_path: Path) -> None:
    """vmctl is killed (SIGKILL) once its chunk's operationIds are journaled: `vmctl resume` watches
    those operations by id; ComputeSchedule gets no second Execute request."""
    sim = make_sim(fleet(4, lro=300), time_scale=SCALE)
    j = tmp_path / "run.jsonl"
    proc, err = spawn(tmp_path, "deallocate", "--all", "--engine", "batch", "--yes", "--no-evidence-wait",
                      "--journal", j)
    try:
        poll_until(lambda: j.exists() and of_type(records(j), "chunk-accepted"), timeout=30)
    finally:
        proc.kill()
    wait_or_kill(proc)
    ids = of_type(records(j), "chunk-accepted")[0]["operations"]
    dry = vmctl("resume", j, "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    steps = json.loads(dry.stdout)["data"]["steps"]
    assert {s["resume"] for s in steps} == {"watch"} and all("re-attaching by operationId" in s["reason"] for s in steps)
    r = vmctl("resume", j, "--yes", "--no-evidence-wait", "-o", "json")
    assert r.exit_code == 0, r.output
    vms = report(r)["vms"]
    assert {v["outcome"] for v in vms} == {"succeeded"}
    assert {v["operationId"] for v in vms} == set(ids.values())
    st = sim.stats()
    assert st["by_operation"]["computeSchedule.executeDeallocate"] == 1 and st["schedule_operations"] == 4
    assert st["operations_started"] == 4
