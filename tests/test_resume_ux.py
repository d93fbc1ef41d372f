"""`vmctl resume` as an operator meets it: the remaining plan first (what will be sent, watched,
found done), a confirmation (or --yes; refused off a terminal without it), --dry-run (zero writes,
journal untouched), --last, and closing hints that name the real journal. CLI -> SDK -> simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from conftest import SimHandle
from vmctl import journal as jr
from vmctl.cli import app

runner = CliRunner()


def vmctl(*args: str | Path, stdin: str | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def restarts(sim: SimHandle) -> int:
    return int(sim.stats()["by_operation"].get("virtualMachines.restart", 0))


def interrupted_run(sim: SimHandle) -> Path:
    """A restart of app-01..03 whose journal is cut as if the run had been killed: app-01 finished,
    app-02 sent and accepted (it completed meanwhile), app-03 never sent. The journal is in the
    state directory, as every run's is by default."""
    r = vmctl("restart", "-n", "app-0[1-3]", "--yes", "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    (path,) = jr.journals()
    keep = []
    for rec in records(path):
        t, i = rec["type"], rec.get("index")
        if t in ("run", "plan", "locks") or (i == 0 and t in ("request", "accepted", "outcome")) or \
                (i == 1 and t in ("request", "accepted")):
            keep.append(rec)
    path.write_text("".join(json.dumps(x) + "\n" for x in keep))
    sim.reset("stats")
    return path


def test_dry_run_shows_what_is_left_and_changes_nothing(sim: SimHandle) -> None:
    path = interrupted_run(sim)
    before = path.read_bytes()
    r = vmctl("resume", path, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "resume-plan"
    assert [(s["name"], s["resume"]) for s in doc["data"]["steps"]] == [("app-02", "found-done"), ("app-03", "send")]
    assert doc["summary"]["finished"] == 1 and doc["summary"]["send"] == 1 and doc["summary"]["found-done"] == 1
    assert doc["data"]["journal"] == str(path)
    assert "nothing was sent and the journal is untouched" in r.stderr
    assert sim.stats()["writes"] == 0 and path.read_bytes() == before
    table = vmctl("resume", path, "--dry-run")
    assert table.exit_code == 0, table.output
    assert "found done" in table.stdout and "send" in table.stdout and str(path) in table.stdout


def test_without_a_terminal_resume_needs_yes_and_then_sends_only_what_is_left(sim: SimHandle) -> None:
    path = interrupted_run(sim)
    before = path.read_bytes()
    r = vmctl("resume", path, "--no-evidence-wait")
    assert r.exit_code == 2, r.output
    assert "no terminal to confirm" in r.stderr and "--yes" in r.stderr
    assert "app-03" in r.stdout  # the remaining plan was shown before the refusal
    assert sim.stats()["writes"] == 0 and path.read_bytes() == before
    r = vmctl("resume", path, "--yes", "--no-evidence-wait", "-o", "json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert [v["outcome"] for v in rep["vms"]] == ["succeeded"] * 3
    assert restarts(sim) == 1  # app-03 only: app-01 finished, app-02 found done
    assert rep["resumed"] == 1


def test_answering_no_at_the_prompt_sends_nothing(sim: SimHandle, monkeypatch: Any) -> None:
    from vmctl.cli import actions

    path = interrupted_run(sim)
    monkeypatch.setattr(actions, "interactive", lambda: True)
    monkeypatch.setattr("vmctl.cli.runs.interactive", lambda: True)
    r = vmctl("resume", path, "--no-evidence-wait", stdin="n\n")
    assert r.exit_code == 4, r.output
    assert "Go ahead: 1 restart on 1 VM(s)?" in r.output
    assert sim.stats()["writes"] == 0


def test_last_picks_the_most_recent_run_and_says_which(sim: SimHandle) -> None:
    path = interrupted_run(sim)
    r = vmctl("resume", "--last", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"--last: {path}" in r.stderr
    r = vmctl("resume", path, "--last")
    assert r.exit_code == 2 and "not both" in r.stderr
    r = vmctl("resume")
    assert r.exit_code == 2 and "--last" in r.stderr and "vmctl runs" in r.stderr


def test_last_with_no_runs_exits_2(sim: SimHandle) -> None:
    r = vmctl("resume", "--last")
    assert r.exit_code == 2 and "there are no runs in" in r.stderr


def test_a_finished_run_has_nothing_to_resume_and_its_journal_is_untouched(sim: SimHandle) -> None:
    r = vmctl("restart", "-n", "app-01", "--yes", "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    (path,) = jr.journals()
    before = path.read_bytes()
    sim.reset("stats")
    r = vmctl("resume", "--last")
    assert r.exit_code == 0, r.output
    assert "Nothing to resume" in r.stderr
    assert sim.stats()["writes"] == 0 and path.read_bytes() == before


def test_closing_hints_name_the_real_journal(sim: SimHandle) -> None:
    path = interrupted_run(sim)
    with path.open("a") as fh:  # as a Ctrl-C leaves it: interrupted, then the end record
        fh.write(json.dumps({"ts": jr.now_iso(), "type": "interrupted", "abandoned": False}) + "\n")
        fh.write(json.dumps({"ts": jr.now_iso(), "type": "end", "interrupted": True}) + "\n")
    for fmt in ("table", "markdown"):
        r = vmctl("report", path, "-o", fmt)
        assert r.exit_code == 0, r.output
        assert f"vmctl resume {path}" in r.stdout
        assert "JOURNAL" not in r.stdout
