"""Activity Log evidence: after every run, `vmctl evidence`, and the report bundle."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml
from typer.testing import CliRunner

from conftest import BASIC, SUB_A, SimHandle, poll_until
from vmctl.cli import app

runner = CliRunner()


def vmctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def fleet(**time: Any) -> dict[str, Any]:
    """The basic fleet with these `time` settings; no jitter unless asked (the delays are the test)."""
    data = copy.deepcopy(yaml.safe_load(BASIC.read_text()))
    data["time"].update({"jitter": 0, **time})
    return data


def report(r: Any) -> dict[str, Any]:
    return json.loads(r.stdout)["data"]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_late_evidence_arrives_within_the_wait(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet(activity_log_delay_seconds=1.5))
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "-n", "app-0[12]", "--yes", "--journal", str(j), "-o", "json")
    assert r.exit_code == 0, r.output
    assert "not in the Activity Log yet" in r.stderr           # the progress line while it lagged
    for v in report(r)["vms"]:
        ev = v["evidence"]
        assert ev["complete"] and ev["statuses"] == ["Started", "Accepted", "Succeeded"]
        assert ev["operationName"] == "Microsoft.Compute/virtualMachines/deallocate/action"
        assert ev["caller"] == "tester@contoso.example" and ev["operationId"]
        assert ev["correlationId"] == v["correlationId"]
        assert ev["submissionTimestamps"]["Succeeded"] > ev["eventTimestamps"]["Succeeded"]
    recs = records(j)
    assert all(r["correlationId"] and r["clientRequestId"] for r in recs if r["type"] == "accepted")
    assert [r["missing"] for r in recs if r["type"] == "evidence-status"] == [[]]


def test_missing_at_the_deadline_is_shown_then_fetched_later(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet(activity_log_delay_seconds=3))
    j = tmp_path / "run.jsonl"
    r = vmctl("deallocate", "-n", "app-03", "--yes", "--journal", str(j), "--evidence-wait", "0.5", "-o", "markdown")
    assert r.exit_code == 0, r.output                            # missing evidence is not a failed VM
    assert "MISSING: not in the Activity Log yet" in r.stdout
    assert "vmctl evidence --journal" in r.stderr
    rep = report(vmctl("report", str(j), "-o", "json"))
    assert rep["vms"][0]["evidence"]["complete"] is False       # shown as missing, never dropped

    def fetched() -> bool:
        out = vmctl("evidence", "--journal", str(j), "-o", "json")
        return out.exit_code == 0 and json.loads(out.stdout)["summary"]["missing"] == []

    poll_until(fetched, timeout=20, interval=0.5)
    rep = report(vmctl("report", str(j), "-o", "json"))
    assert rep["vms"][0]["evidence"]["statuses"] == ["Started", "Accepted", "Succeeded"]
    md = vmctl("report", str(j), "-o", "markdown").stdout
    assert "Started > Accepted > Succeeded" in md and "MISSING" not in md


def test_failed_operation_has_a_failed_event(sim: SimHandle) -> None:
    assert vmctl("deallocate", "-n", "app-04", "--yes").exit_code == 0
    sim.faults({"vm": "app-04", "operation": "start", "error": "AllocationFailed", "times": 1})
    r = vmctl("start", "-n", "app-04", "--yes", "-o", "json")
    assert r.exit_code == 1, r.output
    ev = report(r)["vms"][0]["evidence"]
    assert ev["statuses"] == ["Started", "Accepted", "Failed"] and ev["complete"]
    assert "AllocationFailed" in ev["statusMessage"]


def test_no_evidence_wait_sends_no_activity_query(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("deallocate", "-n", "app-05", "--yes", "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    assert "activityLogs.list" not in sim.stats()["by_operation"]
    assert "not collected yet" in r.stdout


def test_combined_filters_one_server_side_rest_client_side(sim: SimHandle) -> None:
    vmctl("deallocate", "-n", "app-01", "-n", "app-02", "--yes")
    vmctl("start", "-n", "app-01", "--yes")
    sim.faults({"vm": "app-02", "operation": "start", "error": "AllocationFailed", "times": 1})
    vmctl("start", "-n", "app-02", "--yes")
    r = vmctl("evidence", "-g", "rg-app", "--since", "1h", "--operation", "start", "--status", "failed",
              "--caller", "tester@contoso.example", "--debug", "-o", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [(e["resourceId"].rsplit("/", 1)[-1], e["status"]) for e in doc["data"]] == [("app-02", "Failed")]
    assert doc["summary"]["serverSideFilter"].count(" eq ") == 1          # one scope filter is sent
    assert "resourceGroupName eq 'rg-app'" in doc["summary"]["serverSideFilter"]
    assert set(doc["summary"]["clientSideFilters"]) == {"operationName", "caller", "status"}
    assert "debug: server-side filter (resourceGroupName)" in r.stderr
    assert "debug: client-side filters: operationName, caller, status" in r.stderr
    by_id = vmctl("evidence", "-n", "app-01", "--since", "1h", "-o", "json", "--query", "[].status")
    assert json.loads(by_id.stdout) == ["Started", "Accepted", "Succeeded"] * 2


def test_window_older_than_90_days_is_refused(sim: SimHandle) -> None:
    sim.reset("stats")
    r = vmctl("evidence", "--from", "2026-01-01T00:00:00Z")
    assert r.exit_code == 2
    assert "keeps events for 90 days only" in r.stderr and "Log Analytics" in r.stderr
    assert sim.stats()["requests"] == 0


def test_paging_over_more_than_2000_events(make_sim: Any) -> None:
    vms = 700
    data = {"tenant_id": "11111111-0000-0000-0000-000000000000", "throttling": {"enabled": False},
            "time": {"lro_seconds": {"powerOff": 0}, "activity_log_delay_seconds": 0},
            "paging": {"activity_log": 200},
            "subscriptions": [{"id": SUB_A, "name": "big", "resource_groups": [
                {"name": "rg-big", "vms": [{"name": "v-{i:03d}", "count": vms}]}]}]}
    sim = make_sim(data)
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://management.azure.com/.default").token
    s = requests.Session()
    s.verify = str(sim.sim.ca_path)
    s.headers["Authorization"] = f"Bearer {token}"
    base = f"{sim.url}/subscriptions/{SUB_A}/resourceGroups/rg-big/providers/Microsoft.Compute/virtualMachines"

    def power_off(i: int) -> int:
        return s.post(f"{base}/v-{i:03d}/powerOff?api-version=2026-04-01", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(power_off, range(1, vms + 1))) == {202}
    sim.reset("stats")
    r = vmctl("evidence", "--since", "1h", "-o", "json", "--query", "length(@)")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == 3 * vms                        # 2,100 events, none lost
    assert sim.stats()["by_operation"]["activityLogs.list"] == -(-3 * vms // 200)   # every page


def test_bundle_is_verifiable(sim: SimHandle, tmp_path: Path) -> None:
    j = tmp_path / "run.jsonl"
    assert vmctl("deallocate", "-n", "app-06", "--yes", "--journal", str(j), "--ticket", "CHG-9").exit_code == 0
    out = tmp_path / "bundle"
    r = vmctl("report", str(j), "--bundle", str(out))
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "evidence.json", "journal.jsonl", "plan.json", "report.json", "report.md"]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["missing"] == [] and len(next(iter(ev["events"].values()))) == 3
    assert "CHG-9" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["kind"] == "run-report"
    (out / "report.md").write_text("tampered")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode != 0
    again = vmctl("report", str(j), "--bundle", str(out))
    assert again.exit_code == 2 and "not empty" in again.stderr
