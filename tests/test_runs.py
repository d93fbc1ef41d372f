"""`vmctl runs`: past runs from the state directory, newest first (time, verb, outcomes, exit code,
state, journal), as a table and as JSON (kind `runs`). Reads journals only: no request is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from conftest import SimHandle
from vmctl import journal as jr
from vmctl.cli import app

runner = CliRunner()
RUN_KEYS = ["runId", "startedAt", "endedAt", "verb", "action", "ticket", "command", "user", "host", "vms",
            "summary", "exitCode", "state", "resumed", "journal", "error"]


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def cut(path: Path) -> None:
    """Leave the journal as a killed run leaves it: nothing after the first request."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs if r["type"] in ("run", "plan", "locks")))


def test_runs_lists_past_runs_newest_first(sim: SimHandle) -> None:
    assert vmctl("runs").exit_code == 0  # none yet: says so, exit 0
    r = vmctl("restart", "-n", "app-01", "--yes", "--no-evidence-wait", "--ticket", "CHG-1")
    assert r.exit_code == 0, r.output
    r = vmctl("deallocate", "-n", "app-02", "-n", "app-03", "--yes", "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    newest = jr.journals()[0]
    cut(newest)
    (jr.state_dir() / "notes.jsonl").write_text("not a journal\n")
    sim.reset("stats")

    r = vmctl("runs", "-o", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "runs" and doc["summary"] == {"runs": 3, "total": 3}
    dealloc, restart, junk = doc["data"]
    for item in doc["data"]:
        assert list(item) == RUN_KEYS
    assert dealloc["verb"] == "deallocate" and dealloc["state"] == "unfinished" and dealloc["exitCode"] is None
    assert dealloc["journal"] == str(newest) and dealloc["vms"] == 2 and dealloc["summary"]["pending"] == 2
    assert restart["verb"] == "restart" and restart["state"] == "finished" and restart["exitCode"] == 0
    assert restart["ticket"] == "CHG-1" and restart["summary"]["succeeded"] == 1
    assert restart["startedAt"] < dealloc["startedAt"]
    assert junk["state"] == "unreadable" and "not a vmctl journal" in junk["error"]
    assert sim.stats()["requests"] == 0

    table = vmctl("runs")
    assert table.exit_code == 0, table.output
    assert table.stdout.index("deallocate") < table.stdout.index("restart") and "unfinished" in table.stdout
    assert f"vmctl resume {newest}" in table.stdout
    one = vmctl("runs", "--limit", "1", "-o", "json")
    assert [d["verb"] for d in json.loads(one.stdout)["data"]] == ["deallocate"]
    assert vmctl("runs", "--limit", "-1").exit_code == 2


def test_a_run_journaled_elsewhere_is_listed_and_found_by_last(sim: SimHandle, tmp_path: Path) -> None:
    """--journal PATH outside the state directory: a link there lets `runs` and `--last` find it,
    shown by its real path; a removed journal leaves a dangling link that is not listed."""
    kept = tmp_path / "tickets" / "CHG-7.jsonl"
    r = vmctl("restart", "-n", "app-01", "--yes", "--no-evidence-wait", "--journal", kept)
    assert r.exit_code == 0, r.output
    assert jr.journals() == [kept.resolve()]
    doc = json.loads(vmctl("runs", "-o", "json").stdout)
    assert [d["journal"] for d in doc["data"]] == [str(kept.resolve())]
    r = vmctl("resume", "--last", "--dry-run")
    assert str(kept.resolve()) in r.output
    kept.unlink()
    assert jr.journals() == []
