"""vmctl through the CLI against the simulator's strict (Azure-true) defaults: sparse status
listings, state refusals, preempted operations, failures after acting. Each behaviour of the
"Azure-true" issue, section 3, and its acceptance test."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from conftest import SUB_A, SimHandle, poll_until
from vmctl.cli import app

runner = CliRunner()

ACT_HOOK = """\
import json, os, ssl, sys, urllib.request
# another principal acts on the VM, or injects faults, the moment vmctl is about to act
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
path, body = sys.argv[1], json.loads(sys.argv[2].replace("VM", os.environ["VMCTL_VM_NAME"]))
req = urllib.request.Request(os.environ["VMCTL_ARM_ENDPOINT"] + path, data=json.dumps(body).encode(),
                             method="POST", headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, context=ctx).read().decode())
"""


def fleet(platform: dict[str, Any] | None = None, lro: float = 0.3, restart: float | None = None) -> dict[str, Any]:
    """Strict timing defaults (no Retry-After, jitter) with short operations; a production group,
    a dev group with an ephemeral-OS VM and a web tier."""
    lro_seconds = {op: lro for op in ("powerOff", "deallocate", "start", "restart")}
    if restart is not None:
        lro_seconds["restart"] = restart
    doc: dict[str, Any] = {
        "tenant_id": "11111111-0000-0000-0000-000000000000",
        "time": {"lro_seconds": lro_seconds, "activity_log_delay_seconds": 0.2},
        "subscriptions": [{"id": SUB_A, "name": "sub-a", "resource_groups": [
            {"name": "rg-shop-prod", "vms": [{"name": "shop-{i}", "count": 3, "tags": {"env": "prod", "app": "shop"}}]},
            {"name": "rg-dev", "vms": [
                {"name": "web-{i}", "count": 2, "tags": {"env": "dev", "app": "web"}},
                {"name": "eph-1", "tags": {"env": "dev"}, "os_disk": "ephemeral"},
                {"name": "job-1", "tags": {"env": "dev", "app": "batch"}},
            ]},
        ]}],
    }
    if platform:
        doc["platform"] = platform
    return doc


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def config(tmp_path: Path) -> Path:
    p = tmp_path / "vmctl.toml"
    p.write_text("[execution]\npoll_interval = 0.1\n", encoding="utf-8")
    return p


def writes(sim: SimHandle) -> dict[str, int]:
    return {k: v for k, v in sim.stats()["by_operation"].items()
            if k.startswith("virtualMachines.") and k.split(".")[1] in
            ("powerOff", "deallocate", "start", "restart", "performMaintenance", "redeploy")}


def states(*names: str) -> dict[str, str]:
    r = vmctl("list", "-o", "json")
    assert r.exit_code == 0, r.output
    return {d["name"]: d["powerState"] for d in json.loads(r.stdout)["data"] if not names or d["name"] in names}


def hook(tmp_path: Path, path: str, body: dict[str, Any]) -> str:
    script = tmp_path / "act.py"
    script.write_text(ACT_HOOK, encoding="utf-8")
    return f"\"{sys.executable}\" {script} {path} '{json.dumps(body)}'"


# ---------------------------------------------------------------------------- acceptance: fail closed on sparse listings
@pytest.mark.parametrize("shape", ["sparse", "full"])
def test_production_guard_tag_selection_and_ephemeral_skip_hold_on_azures_status_listing(
        make_sim: Callable[..., SimHandle], tmp_path: Path, shape: str) -> None:
    """Sparse is Azure's real statusOnly shape (no tags, no storage profile): the production guard,
    tag selection and the ephemeral-OS skip must not depend on it. Zero writes to production."""
    sim = make_sim(fleet({"status_only_items": shape}))
    sim.reset("stats")
    # tag selection sees the tags, which only the full listing carries
    r = vmctl("list", "--tag", "app=web", "-o", "json", "--query", "[].name")
    assert r.exit_code == 0 and json.loads(r.stdout) == ["web-1", "web-2"], r.output
    r = vmctl("list", "--tag", "env=prod", "-o", "json", "--query", "[?production].name")
    assert json.loads(r.stdout) == ["shop-1", "shop-2", "shop-3"]
    # a whole production group with --yes: refused by the production guard (exit 4), nothing sent
    r = vmctl("deallocate", "-g", "rg-shop-prod", "--yes", "--config", config(tmp_path))
    assert r.exit_code == 4 and "every VM the plan could act on is production (3" in r.stderr, r.output
    assert r.stdout.count("skip: production") == 3
    assert writes(sim) == {}
    # both groups with --yes: dev is deallocated, production and the ephemeral-OS VM are not touched
    r = vmctl("deallocate", "-g", "rg-shop-prod", "-g", "rg-dev", "--yes", "--no-evidence-wait", "-o", "json",
              "--config", config(tmp_path))
    assert r.exit_code == 0, r.output
    rep = {v["name"]: v for v in json.loads(r.stdout)["data"]["vms"]}
    assert {n: (v["action"], v["skip"]) for n, v in rep.items()} == {
        "eph-1": (None, "ephemeral-os-disk"), "job-1": ("deallocate", None), "web-1": ("deallocate", None),
        "web-2": ("deallocate", None), "shop-1": (None, "production"), "shop-2": (None, "production"),
        "shop-3": (None, "production")}
    assert writes(sim) == {"virtualMachines.deallocate": 3}
    assert states() == {"shop-1": "running", "shop-2": "running", "shop-3": "running", "eph-1": "running",
                        "job-1": "deallocated", "web-1": "deallocated", "web-2": "deallocated"}


# ---------------------------------------------------------------------------- 409 refusals; state changed since the plan
@pytest.mark.assumption("restart while a deallocate runs gets the same 409 as restart of a deallocated VM")
def test_a_vm_that_changed_state_since_the_plan_gets_azures_refusal_at_once(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """Planned as running; someone deallocates it just before vmctl restarts it. Azure refuses the
    restart with a synchronous 409 (§15): the VM fails at once with Azure's message, no retry."""
    sim = make_sim(fleet())
    pre = hook(tmp_path, "/_sim/act", {"vm": "VM", "resource_group": "rg-dev", "action": "deallocate"})
    sim.reset("stats")
    journal = tmp_path / "j.jsonl"
    r = vmctl("restart", "-g", "rg-dev", "-n", "web-1", "--yes", "--pre-hook", pre, "--hook-env", "REQUESTS_CA_BUNDLE", "--hook-env", "VMCTL_ARM_ENDPOINT", "--journal", journal,
              "--no-evidence-wait", "-o", "json", "--config", config(tmp_path))
    assert r.exit_code == 1, r.output
    (v,) = json.loads(r.stdout)["data"]["vms"]
    assert v["before"] == "running" and v["outcome"] == "failed" and v["retries"] == 0
    assert "(OperationNotAllowed) The operation requires the VM to be running (or set to run)." in v["reason"]
    assert v["after"] in ("deallocating", "deallocated")  # verify shows the real state
    assert writes(sim) == {"virtualMachines.restart": 1}  # one POST, refused; never resent
    assert sim.stats()["by_status"].get("409") == 1
    assert not [rec for rec in map(json.loads, journal.read_text().splitlines()) if rec["type"] == "retry"]


def test_stop_of_a_vm_being_deallocated_is_refused_not_turned_into_a_billed_stop(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(lro=0.5))
    pre = hook(tmp_path, "/_sim/act", {"vm": "VM", "resource_group": "rg-dev", "action": "deallocate"})
    r = vmctl("stop", "--keep-allocation", "-g", "rg-dev", "-n", "job-1", "--yes", "--pre-hook", pre, "--hook-env", "REQUESTS_CA_BUNDLE", "--hook-env", "VMCTL_ARM_ENDPOINT",
              "--no-evidence-wait", "-o", "json", "--config", config(tmp_path))
    assert r.exit_code == 1, r.output
    (v,) = json.loads(r.stdout)["data"]["vms"]
    assert v["outcome"] == "failed" and "either deallocated or marked to be deallocated" in v["reason"]
    poll_until(lambda: states("job-1") == {"job-1": "deallocated"}, timeout=20)  # never deallocated -> stopped
    assert writes(sim) == {"virtualMachines.powerOff": 1}


# ---------------------------------------------------------------------------- preempted operations
@pytest.mark.assumption("which operation pairs preempt on Azure is not established; the simulator's default preempts")
def test_an_operation_preempted_by_someone_else_is_reported_as_preempted(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """vmctl's restart is accepted; another principal deallocates the VM while it runs: Azure ends
    vmctl's operation Canceled/OperationPreempted. Never a success; verify shows where it ended."""
    sim = make_sim(fleet(restart=1.2))
    sim.faults({"vm": "web-2", "operation": "restart", "error": "OperationPreempted"})
    journal = tmp_path / "j.jsonl"

    def other_principal() -> None:
        poll_until(lambda: journal.exists() and '"accepted"' in journal.read_text() and
                   journal.read_text().count('"accepted"') >= 2, timeout=30)
        sim.control("POST", "/_sim/act", {"vm": "web-1", "resource_group": "rg-dev", "action": "deallocate"})

    t = threading.Thread(target=other_principal, daemon=True)
    t.start()
    r = vmctl("restart", "-g", "rg-dev", "-n", "web-*", "--yes", "--journal", journal, "--evidence-wait", "20s",
              "-o", "json", "--config", config(tmp_path))
    t.join(timeout=5)
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)["data"]
    vms = {v["name"]: v for v in rep["vms"]}
    assert {n: v["outcome"] for n, v in vms.items()} == {"web-1": "preempted", "web-2": "preempted"}
    assert rep["summary"]["preempted"] == 2 and rep["summary"]["succeeded"] == 0
    for v in vms.values():
        assert "OperationPreempted" in v["reason"] and "superseded" in v["reason"]
    assert vms["web-1"]["after"] in ("deallocating", "deallocated")
    assert vms["web-2"]["after"] == "running"  # a fault-injected preemption leaves the VM as it was
    # the evidence names the operation vmctl sent; the table says preempted, not succeeded
    assert vms["web-1"]["evidence"]["complete"] and "Failed" in vms["web-1"]["evidence"]["statuses"]
    table = vmctl("report", journal)
    assert "2 preempted (another request superseded vmctl's)" in table.stdout


# ---------------------------------------------------------------------------- failures after acting are reported
def test_verify_and_evidence_failures_appear_in_the_report(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """The after-state listing and the Activity Log both refuse (injected the moment vmctl acts):
    the VMs still succeeded, and the report says what could not be read."""
    sim = make_sim(fleet())
    faults = [{"operation": "listAll", "error": "400", "times": "always"},
              {"operation": "activityLogs.list", "error": "400", "times": "always"}]
    pre = hook(tmp_path, "/_sim/faults", faults)  # type: ignore[arg-type]
    journal, report = tmp_path / "j.jsonl", tmp_path / "r.md"
    r = vmctl("restart", "-g", "rg-dev", "-n", "web-1", "--yes", "--pre-hook", pre, "--hook-env", "REQUESTS_CA_BUNDLE", "--hook-env", "VMCTL_ARM_ENDPOINT", "--journal", journal,
              "--report", report, "--evidence-wait", "5s", "-o", "json", "--config", config(tmp_path))
    sim.control("DELETE", "/_sim/faults")
    recs = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [x["type"] for x in recs if x["type"] in ("verify-failed", "evidence-failed")] == \
        ["verify-failed", "evidence-failed"]
    rep = json.loads(r.stdout)["data"]
    assert r.exit_code == 0 and rep["vms"][0]["outcome"] == "succeeded", r.output
    assert len(rep["warnings"]) == 2
    assert "after-state of subscription" in rep["warnings"][0] and "BadRequest" in rep["warnings"][0]
    assert rep["warnings"][1].startswith("the Activity Log could not be read")
    text = report.read_text()
    assert "WARNING: The after-state of subscription" in text and "WARNING: The Activity Log could not be read" in text
