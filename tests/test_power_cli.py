"""`vmctl stop|deallocate|start|restart|report` end to end: CLI (no TTY) -> real SDK -> simulator.

Nothing is mocked: the simulator's /_sim/stats counts every write, its Activity Log records every
request with the correlation id vmctl sent. Waiting is done with poll_until, never a fixed sleep.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from typer.testing import CliRunner

from conftest import BASIC, SUB_A, SimHandle, poll_until
from vmctl.cli import app

runner = CliRunner()
Make = Callable[..., SimHandle]


# --------------------------------------------------------------------------- helpers
def vmctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def vm_id(rg: str, name: str, sub: str = SUB_A) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def writes(sim: SimHandle) -> int:
    return int(sim.stats()["writes"])


def ops(sim: SimHandle) -> dict[str, int]:
    return dict(sim.stats()["by_operation"])


def basic() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(BASIC.read_text(encoding="utf-8")))


def small_fleet(*vms: dict[str, Any]) -> dict[str, Any]:
    """basic.yaml's timing and identity, one subscription, one group rg-x holding `vms`."""
    f = basic()
    f["subscriptions"] = [{"id": SUB_A, "name": "test-sub-a", "resource_groups": [{"name": "rg-x", "vms": list(vms)}]}]
    return f


def report_json(r: Any) -> dict[str, Any]:
    """The run report a `-o json` run prints on stdout (the plan goes to stderr)."""
    env = json.loads(r.stdout)
    assert env["kind"] == "run-report", env.get("kind")
    return env


def by_name(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rep["data"]["vms"]}


def states(*names: str) -> dict[str, dict[str, Any]]:
    """Current state of the named VMs as `vmctl list` reads it (reads only)."""
    args = ["list", "-o", "json", "--include-production"]
    for n in names:
        args += ["-n", n]
    r = vmctl(*args)
    assert r.exit_code == 0, r.output
    return {d["name"]: d for d in json.loads(r.stdout)["data"]}


def journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def monitor_client(sim: SimHandle) -> Any:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.monitor import MonitorManagementClient

    return MonitorManagementClient(DefaultAzureCredential(), SUB_A, base_url=sim.url)


def activity(monitor: Any, rid: str) -> list[Any]:
    start = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return list(monitor.activity_logs.list(filter=f"eventTimestamp ge '{start}' and resourceId eq '{rid}'"))


def write_config(tmp_path: Path, text: str) -> str:
    p = tmp_path / "vmctl.toml"
    p.write_text(text, encoding="utf-8")
    return str(p)


APP3 = ("-n", "app-0[123]")  # three running, non-production VMs in rg-app


# =========================================================================== dry run and plan
def test_dry_run_prints_the_plan_and_sends_no_write(sim: SimHandle, tmp_path: Path) -> None:
    sim.reset("stats")
    r = vmctl("deallocate", "-g", "rg-misc", "--dry-run")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "ACTION" in lines[0] and "CONSEQUENCE / REASON" in lines[0]
    row = {name: next(line for line in lines if f" {name} " in line)
           for name in ("hib-01", "eph-01", "node-0", "stopped-01", "dealloc-01", "broken-01")}
    assert " deallocate " in row["hib-01"] and "temporary disk data lost" in row["hib-01"]
    assert "skip: ephemeral-os-disk" in row["eph-01"]
    assert "skip: scale-set-member" in row["node-0"]
    assert "skip: production" in row["stopped-01"] and "skip: production" in row["dealloc-01"]
    assert "skip: provisioning-failed" in row["broken-01"]
    assert "1 deallocate" in r.stdout and "2 production" in r.stdout
    assert writes(sim) == 0
    assert not (tmp_path / "home" / ".local" / "state" / "vmctl" / "runs").exists()  # a dry run keeps no journal


def test_plan_out_matches_the_printed_plan(sim: SimHandle, tmp_path: Path) -> None:
    sim.reset("stats")
    out = tmp_path / "plan.json"
    r = vmctl("stop", "-g", "rg-app", "--keep-allocation", "--dry-run", "--plan-out", str(out), "-o", "json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["kind"] == "plan"
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["runId"] == shown["data"]["runId"] and saved["verb"] == "stop" and saved["action"] == "powerOff"
    assert [(s["index"], s["vm"]["id"], s["action"], s["skip"], s["detail"]) for s in saved["steps"]] == \
        [(s["index"], s["vm"]["id"], s["action"], s["skip"], s["detail"]) for s in shown["data"]["steps"]]
    assert [s["vm"]["name"] for s in saved["steps"]] == [f"app-0{i}" for i in range(1, 7)] + ["closed-01", "notallowed-01"]
    assert {s["action"] for s in saved["steps"]} == {"powerOff"}
    assert saved["summary"]["leftStoppedButBilled"] == 8
    assert writes(sim) == 0


def test_dry_run_exits_4_when_max_targets_would_refuse(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("deallocate", *APP3, "--max-targets", "1", "--dry-run")
    assert r.exit_code == 4, r.output
    assert "REFUSED" in r.stdout and "--max-targets 1" in r.stdout
    assert writes(sim) == 0


def test_dry_run_exits_4_for_stop_without_keep_allocation(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("stop", "-n", "app-01", "--dry-run")
    assert r.exit_code == 4, r.output
    assert "app-01" in r.stdout and "REFUSED" in r.stdout and "--keep-allocation" in r.stdout
    assert writes(sim) == 0


# =========================================================================== stop versus deallocate
def test_stop_without_keep_allocation_is_refused_without_a_terminal(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("stop", "-n", "app-01", "--yes")
    assert r.exit_code == 4, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert err[0].startswith("error: stop keeps compute allocated and billed") and "--keep-allocation" in err[0]
    assert writes(sim) == 0
    assert states("app-01")["app-01"]["powerState"] == "running"


def test_stop_keep_allocation_powers_off_and_counts_stopped_but_billed(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("stop", "-n", "app-01", "-n", "app-02", "--keep-allocation", "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    rep = report_json(r)
    vms = by_name(rep)
    assert [v["outcome"] for v in vms.values()] == ["succeeded", "succeeded"]
    assert {v["action"] for v in vms.values()} == {"powerOff"}
    assert {v["after"] for v in vms.values()} == {"stopped"}
    assert rep["summary"]["leftStoppedButBilled"] == 2
    assert ops(sim).get("virtualMachines.powerOff") == 2 and "virtualMachines.deallocate" not in ops(sim)
    now = states("app-01", "app-02")
    assert now["app-01"]["powerState"] == now["app-02"]["powerState"] == "stopped"
    assert now["app-01"]["stoppedButBilled"] is True


def test_stop_report_table_says_left_stopped_but_billed(sim: SimHandle) -> None:
    r = vmctl("stop", "-n", "app-03", "--keep-allocation", "--yes")
    assert r.exit_code == 0, r.output
    # the plan warns before, the report counts after
    assert "1 VMs will be left stopped but still billed" in r.stdout
    assert "1 VMs are left stopped but still billed" in r.stdout


# =========================================================================== production
def prod_fleet() -> dict[str, Any]:
    """basic.yaml with closed-01 deallocated, so `start` has a non-production VM to act on."""
    f = basic()
    rg_app = f["subscriptions"][0]["resource_groups"][0]
    closed = next(v for v in rg_app["vms"] if v["name"] == "closed-01")
    closed["power_state"] = "deallocated"
    return f


START_OFF = ("start", "--power-state", "stopped", "--power-state", "deallocated")


def test_production_untouched_by_yes_alone(make_sim: Make) -> None:
    sim = make_sim(prod_fleet())
    sim.reset("stats")
    r = vmctl(*START_OFF, "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    vms = by_name(report_json(r))
    assert set(vms) == {"closed-01", "stopped-01", "dealloc-01"}
    for prod in ("stopped-01", "dealloc-01"):
        assert vms[prod]["skip"] == "production" and vms[prod]["outcome"] == "skipped"
        assert vms[prod]["action"] is None and vms[prod]["correlationId"] is None
    assert vms["closed-01"]["outcome"] == "succeeded"
    # exactly one write: the start of closed-01
    assert writes(sim) == 1 and ops(sim)["virtualMachines.start"] == 1
    # and the Activity Log: events for closed-01, none for the production VMs
    monitor = monitor_client(sim)
    poll_until(lambda: len(activity(monitor, vm_id("rg-app", "closed-01"))) == 3)
    assert activity(monitor, vm_id("rg-misc", "stopped-01")) == []
    assert activity(monitor, vm_id("rg-misc", "dealloc-01")) == []
    now = states("stopped-01", "dealloc-01")
    assert now["stopped-01"]["powerState"] == "stopped" and now["dealloc-01"]["powerState"] == "deallocated"


def test_include_production_without_yes_and_without_terminal_exits_2(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("start", "-n", "stopped-01", "-n", "dealloc-01", "--include-production")
    assert r.exit_code == 2, r.output
    assert "production" in r.stderr and "--include-production --yes" in r.stderr
    assert writes(sim) == 0


def test_include_production_with_yes_acts_on_them(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("start", "-n", "stopped-01", "-n", "dealloc-01", "--include-production", "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    vms = by_name(report_json(r))
    assert {n: (v["action"], v["outcome"], v["after"]) for n, v in vms.items()} == {
        "dealloc-01": ("start", "succeeded", "running"), "stopped-01": ("start", "succeeded", "running")}
    assert all(v["production"] for v in vms.values())
    assert ops(sim)["virtualMachines.start"] == 2


# =========================================================================== --skip-shutdown
def test_skip_shutdown_with_production_is_refused_without_a_terminal(sim: SimHandle, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[production.rules]]\nresource_groups = ["rg-app"]\n')
    sim.reset("stats")
    r = vmctl("stop", "-n", "app-01", "--keep-allocation", "--skip-shutdown", "--include-production", "--yes",
              "--config", cfg)
    assert r.exit_code == 4, r.output
    assert "--skip-shutdown" in r.stderr and "typed confirmation" in r.stderr
    assert writes(sim) == 0
    # the dry run says the same: without a terminal this run would be refused
    dry = vmctl("stop", "-n", "app-01", "--keep-allocation", "--skip-shutdown", "--include-production", "--dry-run",
                "--config", cfg)
    assert dry.exit_code == 4 and "typed confirmation" in dry.stderr
    assert writes(sim) == 0


def test_skip_shutdown_without_production_works_and_is_reported(sim: SimHandle, tmp_path: Path) -> None:
    sim.reset("stats")
    j, md = tmp_path / "run.jsonl", tmp_path / "report.md"
    r = vmctl("stop", "-n", "app-04", "--keep-allocation", "--skip-shutdown", "--yes", "--journal", str(j),
              "--report", str(md))
    assert r.exit_code == 0, r.output
    assert "HARD POWER-OFF" in r.stdout  # stated in the plan
    assert "--skip-shutdown was used" in r.stdout and "--skip-shutdown was used" in md.read_text(encoding="utf-8")
    req = [x for x in journal(j) if x["type"] == "request"]
    assert len(req) == 1 and req[0]["skipShutdown"] is True
    assert ops(sim)["virtualMachines.powerOff"] == 1
    assert states("app-04")["app-04"]["powerState"] == "stopped"


# =========================================================================== blast radius
def test_max_targets_exceeded_is_refused(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("deallocate", *APP3, "--max-targets", "2", "--yes")
    assert r.exit_code == 4, r.output
    assert "3 VMs, more than --max-targets 2" in r.stderr
    assert writes(sim) == 0


def test_config_max_targets_is_honoured_and_raising_it_explicitly_lets_the_run_go(sim: SimHandle, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[safety]\nmax_targets = 2\n")
    sim.reset("stats")
    r = vmctl("deallocate", *APP3, "--yes", "--config", cfg)
    assert r.exit_code == 4, r.output
    assert "more than --max-targets 2" in r.stderr
    assert writes(sim) == 0
    r = vmctl("deallocate", *APP3, "--yes", "--config", cfg, "--max-targets", "3")
    assert r.exit_code == 0, r.output
    assert ops(sim)["virtualMachines.deallocate"] == 3


def test_max_percent_exceeded_is_refused(sim: SimHandle) -> None:
    sim.reset("stats")
    # 3 of the subscription's 14 VMs is 21 %
    r = vmctl("deallocate", *APP3, "--max-percent", "10", "--yes")
    assert r.exit_code == 4, r.output
    assert "3 of 14 VMs (21%)" in r.stderr and "--max-percent 10" in r.stderr
    assert writes(sim) == 0
    assert vmctl("deallocate", *APP3, "--max-percent", "25", "--dry-run").exit_code == 0


# =========================================================================== confirmation and no-ops
def test_no_terminal_and_no_yes_exits_2_naming_yes(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("deallocate", "-n", "app-01")
    assert r.exit_code == 2, r.output
    assert "--yes" in r.stderr and "no terminal" in r.stderr
    assert writes(sim) == 0


def test_a_selection_of_production_vms_only_is_refused_with_exit_4(sim: SimHandle) -> None:
    """As docs/exit-codes.md says: naming production VMs without --include-production is a guard's refusal."""
    sim.reset("stats")
    for args in (["deallocate", "-n", "dealloc-01", "-n", "stopped-01", "--yes"],
                 ["deallocate", "-n", "stopped-01", "--dry-run"]):
        r = vmctl(*args)
        assert r.exit_code == 4, r.output
        assert "production" in (r.stderr + r.stdout) and "--include-production" in (r.stderr + r.stdout)
    assert writes(sim) == 0


def test_nothing_to_do_exits_0_without_a_write(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("start", "-g", "rg-app", "--yes")
    assert r.exit_code == 0, r.output
    assert "Nothing to do" in r.stderr
    assert writes(sim) == 0


def test_rerunning_a_completed_run_is_a_no_op(sim: SimHandle) -> None:
    sim.reset("stats")
    first = vmctl("deallocate", "-n", "app-05", "--yes")
    assert first.exit_code == 0, first.output
    assert writes(sim) == 1
    sim.reset("stats")
    again = vmctl("deallocate", "-n", "app-05", "--yes")
    assert again.exit_code == 0, again.output
    assert "skip: already-in-target-state" in again.stdout
    assert writes(sim) == 0


# =========================================================================== hibernate
def test_hibernate_fails_vms_without_hibernation_by_default(sim: SimHandle) -> None:
    """--hibernate-fallback fail (the default): no request for them, and they count as failed (exit 3)."""
    sim.reset("stats")
    r = vmctl("deallocate", "-n", "hib-01", "-n", "app-06", "--hibernate", "--yes", "-o", "json")
    assert r.exit_code == 3, r.output
    vms = by_name(report_json(r))
    assert vms["hib-01"]["outcome"] == "succeeded" and vms["hib-01"]["hibernate"] is True
    assert vms["hib-01"]["path"] == "hibernate"
    assert vms["app-06"]["outcome"] == "failed" and vms["app-06"]["skip"] == "hibernation-not-enabled"
    assert ops(sim)["virtualMachines.deallocate"] == 1
    now = states("hib-01", "app-06")
    assert now["hib-01"]["powerState"] == "deallocated" and now["hib-01"]["hibernated"] is True
    assert now["app-06"]["powerState"] == "running"


def test_hibernate_fallback_deallocate_is_shown_in_the_report(sim: SimHandle, tmp_path: Path) -> None:
    j, md = tmp_path / "run.jsonl", tmp_path / "report.md"
    r = vmctl("deallocate", "-n", "hib-01", "-n", "app-06", "--hibernate", "--hibernate-fallback", "deallocate",
              "--yes", "--journal", str(j), "--report", str(md))
    assert r.exit_code == 0, r.output
    main_table = md.read_text(encoding="utf-8").split("### Activity Log evidence")[0]  # not the evidence rows
    rows = {line.split(" | ")[2]: line.split(" | ") for line in main_table.splitlines()
            if line.startswith("| test-sub-a ")}
    assert rows["app-06"][4] == "deallocate (fallback)"
    plan_row = next(line for line in r.stdout.splitlines() if " app-06 " in line)  # the plan says it too
    assert " deallocate (fallback) " in plan_row and "(deallocate (fallback)" not in r.stdout
    assert rows["hib-01"][4] == "deallocate (hibernate)"
    assert rows["app-06"][9] == rows["hib-01"][9] == "succeeded"
    req = {x["vm"].rsplit("/", 1)[1]: x for x in journal(j) if x["type"] == "request"}
    assert req["hib-01"]["hibernate"] is True and req["app-06"]["hibernate"] is False
    now = states("hib-01", "app-06")
    assert now["hib-01"]["hibernated"] is True
    assert now["app-06"]["powerState"] == "deallocated" and now["app-06"]["hibernated"] is False


# =========================================================================== exit codes
THREE_OFF = small_fleet(  # x-1, x-2, x-3 (counts start at 1)
    {"name": "x-{i}", "count": 3, "power_state": "deallocated", "tags": {"env": "dev"}})


def test_exit_1_when_every_vm_fails(make_sim: Make) -> None:
    sim = make_sim(THREE_OFF)
    sim.faults({"vm": "x-*", "operation": "start", "error": "AllocationFailed", "times": "always"})
    r = vmctl("start", "-g", "rg-x", "--yes", "-o", "json")
    assert r.exit_code == 1, r.output
    rep = report_json(r)
    assert [v["outcome"] for v in rep["data"]["vms"]] == ["failed"] * 3
    assert all("AllocationFailed" in v["reason"] and v["correlationId"] for v in rep["data"]["vms"])
    assert rep["data"]["exitCode"] == 1


def test_exit_3_when_one_of_several_fails(make_sim: Make, tmp_path: Path) -> None:
    sim = make_sim(THREE_OFF)
    sim.faults({"vm": "x-2", "operation": "start", "error": "AllocationFailed", "times": "always"})
    out = tmp_path / "report.json"
    r = vmctl("start", "-g", "rg-x", "--yes", "--report", str(out))
    assert r.exit_code == 3, r.output
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["kind"] == "run-report"
    assert {v["name"]: v["outcome"] for v in rep["data"]["vms"]} == {"x-1": "succeeded", "x-2": "failed",
                                                                     "x-3": "succeeded"}
    assert rep["summary"]["succeeded"] == 2 and rep["summary"]["failed"] == 1


def test_exit_0_when_all_succeed(make_sim: Make) -> None:
    make_sim(THREE_OFF)
    r = vmctl("start", "-g", "rg-x", "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    assert [v["outcome"] for v in report_json(r)["data"]["vms"]] == ["succeeded"] * 3


@pytest.mark.parametrize("args,message", [
    (["deallocate", "--tag", "env==prod", "--yes"], "--tag 'env==prod'"),
    (["deallocate", "-n", "app-01", "--hibernate-fallback", "deallocate", "--yes"], "only applies with --hibernate"),
    (["deallocate", "-n", "app-01", "--hibernate", "--hibernate-fallback", "maybe", "--yes"], "is not fail or deallocate"),
    (["start", "-n", "app-01", "--max-targets", "0", "--yes"], "--max-targets must be at least 1"),
])
def test_bad_input_exits_2_before_any_request(sim: SimHandle, args: list[str], message: str) -> None:
    sim.reset("stats")
    r = vmctl(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output
    assert sim.stats()["requests"] == 0


# =========================================================================== report and journal
def test_markdown_report_has_table_run_id_ticket_principal_and_command(
        sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j, md = tmp_path / "run.jsonl", tmp_path / "out.md"
    args = ["deallocate", "-n", "app-01", "-n", "eph-01", "--yes", "--ticket", "CHG-1234", "--journal", str(j),
            "--report", str(md)]
    monkeypatch.setattr(sys, "argv", ["vmctl", *args])  # what the shell would have given the real entry point
    r = vmctl(*args)
    assert r.exit_code == 0, r.output
    run_id = journal(j)[0]["runId"]
    text = md.read_text(encoding="utf-8")
    assert text.startswith(f"## vmctl deallocate: run {run_id} (CHG-1234)")
    assert "Ran as tester@contoso.example" in text
    assert f"Command: vmctl deallocate -n app-01 -n eph-01 --yes --ticket CHG-1234 --journal {j}" in text
    assert "| SUBSCRIPTION | GROUP | NAME | BEFORE | ACTION | AFTER |" in text and "| CORRELATION ID |" in text
    rows = [line for line in text.split("### Activity Log evidence")[0].splitlines() if line.startswith("| test-sub-a ")]
    assert len(rows) == 2
    assert "| app-01 | running | deallocate | deallocated |" in rows[0] and "| succeeded |" in rows[0]
    assert "| eph-01 | running | skip: ephemeral-os-disk | running |" in rows[1] and "| skipped |" in rows[1]


def test_json_report_and_report_command_rerender_the_same_outcomes(make_sim: Make, tmp_path: Path) -> None:
    sim = make_sim(THREE_OFF)
    sim.faults({"vm": "x-3", "operation": "start", "error": "AllocationFailed", "times": "always"})
    j, out = tmp_path / "run.jsonl", tmp_path / "out.json"
    r = vmctl("start", "-g", "rg-x", "--yes", "--journal", str(j), "--report", str(out), "--ticket", "CHG-9")
    assert r.exit_code == 3, r.output
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["kind"] == "run-report" and rep["data"]["ticket"] == "CHG-9"
    assert rep["data"]["principal"]["name"] == "tester@contoso.example"
    per_vm = [(v["name"], v["before"], v["after"], v["outcome"], v["correlationId"]) for v in rep["data"]["vms"]]
    assert [p[:4] for p in per_vm] == [("x-1", "deallocated", "running", "succeeded"),
                                       ("x-2", "deallocated", "running", "succeeded"),
                                       ("x-3", "deallocated", "deallocated", "failed")]
    assert all(p[4] for p in per_vm)

    sim.reset("stats")
    again = vmctl("report", str(j), "-o", "json")
    assert again.exit_code == 0, again.output  # re-rendering succeeds whatever the run's exit code was
    rerendered = json.loads(again.stdout)
    assert rerendered["kind"] == "run-report"
    assert [(v["name"], v["before"], v["after"], v["outcome"], v["correlationId"]) for v in rerendered["data"]["vms"]] \
        == per_vm
    assert rerendered["data"]["exitCode"] == 3 and rerendered["summary"] == rep["summary"]
    assert sim.stats()["requests"] == 0  # from the journal alone


def test_results_are_in_plan_order_not_completion_order(make_sim: Make, tmp_path: Path) -> None:
    sim = make_sim(small_fleet({"name": "x-{i}", "count": 4, "power_state": "deallocated"}))
    sim.faults({"vm": "x-1", "operation": "start", "error": "slow", "delay_seconds": 2})
    j = tmp_path / "run.jsonl"
    r = vmctl("start", "-g", "rg-x", "--yes", "--journal", str(j), "-o", "json")
    assert r.exit_code == 0, r.output
    completed = [x["vm"].rsplit("/", 1)[1] for x in journal(j) if x["type"] == "outcome"]
    assert completed[-1] == "x-1", completed  # x-1 really finished last
    assert [v["name"] for v in report_json(r)["data"]["vms"]] == ["x-1", "x-2", "x-3", "x-4"]
    rerendered = json.loads(vmctl("report", str(j), "-o", "json").stdout)
    assert [v["name"] for v in rerendered["data"]["vms"]] == ["x-1", "x-2", "x-3", "x-4"]


def test_journal_and_activity_log_carry_the_same_correlation_ids(sim: SimHandle, tmp_path: Path) -> None:
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "-n", "app-01", "-n", "app-02", "-n", "eph-01", "--yes", "--journal", str(j), "-o", "json")
    assert r.exit_code == 0, r.output
    assert f"journal: {j}" in r.stderr
    recs = journal(j)
    assert [x["type"] for x in recs[:2]] == ["run", "plan"] and recs[-1]["type"] == "end"
    assert "token" not in j.read_text(encoding="utf-8").lower()
    acted = {"app-01", "app-02"}
    requests = {x["vm"].rsplit("/", 1)[1]: x for x in recs if x["type"] == "request"}
    outcomes = {x["vm"].rsplit("/", 1)[1]: x for x in recs if x["type"] == "outcome"}
    assert set(requests) == acted  # the skipped eph-01 sent no request
    assert outcomes["eph-01"]["status"] == "skipped"
    for name in acted:
        assert requests[name]["correlationId"]
        assert outcomes[name]["status"] == "succeeded"
        assert outcomes[name]["correlationId"] == requests[name]["correlationId"]

    vms = by_name(report_json(r))
    monitor = monitor_client(sim)
    for name in acted:
        cid = vms[name]["correlationId"]
        assert cid == requests[name]["correlationId"]
        got = poll_until(lambda: (lambda e: e if len(e) == 3 else None)(activity(monitor, vm_id("rg-app", name))))
        assert {e.correlation_id for e in got} == {cid}
        assert [e.status.value for e in got] == ["Succeeded", "Accepted", "Started"]
        assert {e.operation_name.value for e in got} == {"Microsoft.Compute/virtualMachines/deallocate/action"}
        assert {e.caller for e in got} == {"tester@contoso.example"}
