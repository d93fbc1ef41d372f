"""The JSON envelope is a contract (docs/json-output.md): pin its keys and types."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from conftest import SUB_A, SimHandle
from vmctl.cli import app
from vmctl.errors import BAD_INPUT, FAILED, INTERRUPTED, OK, PARTIAL, REFUSED

DOCS = Path(__file__).parents[1] / "docs"
ENVELOPE_KEYS = ["schema", "kind", "vmctlVersion", "generatedAt", "data", "summary"]
VM_KEYS = ["id", "name", "resourceGroup", "subscriptionId", "subscriptionName", "location", "size", "powerState",
           "stoppedButBilled", "hibernated", "provisioningState", "availabilitySet", "updateDomain", "faultDomain",
           "zones", "maintenance", "production", "flags", "tags", "maintenanceKnown", "unreadable"]
REPORT_KEYS = ["runId", "verb", "action", "command", "ticket", "principal", "host", "user", "startedAt", "endedAt",
               "interrupted", "resumed", "skipShutdown", "summary", "exitCode", "vms", "evidenceCollected",
               "wavesStopped", "warnings", "confirmedBy", "interruptions", "resumes", "guestJournals", "engine"]
REPORT_VM_KEYS = ["subscriptionId", "subscriptionName", "resourceGroup", "name", "id", "production", "before",
                  "action", "hibernate", "path", "skip", "after", "duration", "retries", "correlationId", "outcome",
                  "reason", "wave", "evidence", "maintenanceResult", "guest", "operationId"]
GUEST_KEYS = ["journal", "kind", "eventId", "eventType", "eventSource", "seenAt", "notBefore", "drained",
              "drainSeconds", "drainReason", "approved", "approvedAt", "approvalReason", "secondsSaved", "recovered",
              "operationEndedBeforeNotBefore"]
MAINT_KEYS = ["allowed", "canStartNow", "selfServiceWindow", "scheduledWindow", "lastOperationResultCode",
              "lastOperationMessage"]


def run(*args: str) -> dict[str, Any]:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_vm_list_envelope_snapshot(sim: SimHandle) -> None:
    doc = run("list", "-n", "app-01", "-n", "stopped-01", "-o", "json")
    assert list(doc) == ENVELOPE_KEYS
    assert doc["schema"] == "vmctl/v1" and doc["kind"] == "vm-list"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["generatedAt"])
    app01, stopped = doc["data"]
    assert list(app01) == VM_KEYS
    assert {k: app01[k] for k in VM_KEYS} == {
        "id": f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Compute/virtualMachines/app-01",
        "name": "app-01", "resourceGroup": "rg-app", "subscriptionId": SUB_A, "subscriptionName": "test-sub-a",
        "location": "westeurope", "size": "Standard_D2s_v5", "powerState": "running", "stoppedButBilled": False,
        "hibernated": False, "provisioningState": "Succeeded", "availabilitySet": "AS-APP",
        # Azure's status listing carries the fault domain, not the update domain nor maintenance (§15)
        "updateDomain": None, "faultDomain": 0, "zones": [], "maintenance": None, "production": False, "flags": [],
        "tags": {"env": "dev", "app": "web"}, "maintenanceKnown": False, "unreadable": None,
    }
    assert stopped["stoppedButBilled"] is True and stopped["production"] is True and stopped["maintenance"] is None
    assert doc["summary"] == {
        "total": 2, "byPowerState": {"running": 1, "stopped": 1}, "stoppedButBilled": 1, "production": 1,
        "maintenanceNotRead": 2, "subscriptions": [{"id": SUB_A, "name": "test-sub-a", "vmCount": 14}],
        "source": "arm"}


def test_maintenance_keys_where_maintenance_is_read(sim: SimHandle) -> None:
    doc = run("maintenance", "status", "-n", "app-01", "-o", "json")
    (app01,) = doc["data"]
    assert list(app01) == VM_KEYS and list(app01["maintenance"]) == MAINT_KEYS
    assert app01["maintenanceKnown"] is True and app01["updateDomain"] == 0
    assert app01["maintenance"]["allowed"] is True and app01["maintenance"]["canStartNow"] is True
    assert app01["maintenance"]["lastOperationResultCode"] == "None"
    assert set(app01["maintenance"]["selfServiceWindow"]) == {"start", "end"}


def test_vm_show_envelope_snapshot(sim: SimHandle) -> None:
    doc = run("show", "-g", "rg-misc", "eph-01", "-o", "json")
    assert [k for k in doc] == ["schema", "kind", "vmctlVersion", "generatedAt", "data"]
    assert doc["kind"] == "vm-show"
    assert list(doc["data"][0]) == ["vm", "instanceView"]
    assert list(doc["data"][0]["vm"]) == VM_KEYS
    assert "statuses" in doc["data"][0]["instanceView"]


RUN_KEYS = ["runId", "startedAt", "endedAt", "verb", "action", "ticket", "command", "user", "host", "vms",
            "summary", "exitCode", "state", "resumed", "journal", "error"]
RESUME_KEYS = ["runId", "verb", "action", "journal", "steps"]
RESUME_STEP_KEYS = ["index", "subscriptionId", "resourceGroup", "name", "id", "production", "action", "resume",
                    "reason", "correlationId"]
RESUME_SUMMARY_KEYS = ["finished", "send", "watch", "resend", "found-done", "failed", "unknown", "gone"]


def test_runs_and_resume_plan_envelopes(sim: SimHandle) -> None:
    r = CliRunner().invoke(app, ["restart", "-n", "app-01", "--yes", "--no-evidence-wait"])
    assert r.exit_code == 0, r.output
    doc = run("runs", "-o", "json")
    assert list(doc) == ENVELOPE_KEYS and doc["kind"] == "runs"
    (item,) = doc["data"]
    assert list(item) == RUN_KEYS
    assert item["state"] == "finished" and item["exitCode"] == 0 and item["verb"] == "restart"
    assert list(item["summary"]) == ["succeeded", "failed", "preempted", "unknown", "skipped", "cancelled",
                                     "in-flight", "pending", "leftStoppedButBilled"]
    assert list(doc["summary"]) == ["runs", "total"]
    report = run("report", item["journal"], "-o", "json")
    assert list(report) == ENVELOPE_KEYS and report["kind"] == "run-report"
    assert list(report["data"]) == REPORT_KEYS and [list(v) for v in report["data"]["vms"]] == [REPORT_VM_KEYS]
    plan = run("resume", item["journal"], "--dry-run", "-o", "json")
    assert list(plan) == ENVELOPE_KEYS and plan["kind"] == "resume-plan"
    assert list(plan["data"]) == RESUME_KEYS and plan["data"]["steps"] == []
    assert list(plan["summary"]) == RESUME_SUMMARY_KEYS and plan["summary"]["finished"] == 1


def test_docs_describe_every_key() -> None:
    text = (DOCS / "json-output.md").read_text()
    for key in ENVELOPE_KEYS + VM_KEYS + MAINT_KEYS + REPORT_KEYS + REPORT_VM_KEYS + GUEST_KEYS + RUN_KEYS + RESUME_KEYS + RESUME_STEP_KEYS + RESUME_SUMMARY_KEYS:
        assert f"`{key}`" in text, key


def test_exit_codes_are_documented() -> None:
    assert (OK, FAILED, BAD_INPUT, PARTIAL, REFUSED, INTERRUPTED) == (0, 1, 2, 3, 4, 130)
    text = (DOCS / "exit-codes.md").read_text()
    for code, name in ((0, "ok"), (1, "failed"), (2, "bad input"), (3, "partial"), (4, "refused by a guard"),
                       (130, "interrupted")):
        assert f"| {code} | {name} |" in text


def test_errors_under_json_are_a_json_envelope_too(sim: SimHandle) -> None:
    """stdout carries one JSON document whatever happens; stderr keeps the sentence."""
    for args, code in ((["list", "--tag", "=x", "-o", "json"], 2),
                       (["deallocate", "-n", "stopped-01", "--yes", "-o", "json"], 4),
                       (["show", "-g", "rg-app", "nosuch", "-o", "json"], 2)):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == code, r.output
        doc = json.loads(r.stdout)
        assert list(doc) == ["schema", "kind", "vmctlVersion", "generatedAt", "error"]
        assert doc["schema"] == "vmctl/v1" and doc["kind"] == "error"
        assert list(doc["error"]) == ["type", "message", "hint", "exitCode"] and doc["error"]["exitCode"] == code
        assert "error: " in r.stderr
    r = CliRunner().invoke(app, ["list", "--tag", "=x"])
    assert r.exit_code == 2 and r.stdout == ""  # not under -o json: the sentence only
