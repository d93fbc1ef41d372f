"""SIGINT and SIGTERM in every phase of a run: planning, the confirmation prompt, execution, the
evidence wait and writing the report. vmctl runs as a subprocess against the simulator; each
signal is sent when the output (or the simulator's counters) shows the phase, polled with a deadline."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from conftest import SimHandle, poll_until
from ptyrun import run_on_pty, wait_or_kill
from test_progress import config_file, fleet

WRITES = "writes"


def spawn(tmp_path: Path, *args: str | Path, stdout: Any = None) -> tuple[subprocess.Popen[bytes], Path]:
    err = tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.txt"
    proc = subprocess.Popen([sys.executable, "-m", "vmctl", *[str(a) for a in args]], env=dict(os.environ),
                            stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=err.open("w"),
                            stdin=subprocess.DEVNULL)
    return proc, err


exit_code = wait_or_kill


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def of_type(recs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in recs if r["type"] == kind]


def test_ctrl_c_at_the_confirmation_prompt_exits_130_and_sends_nothing(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(2))
    journal = tmp_path / "j.jsonl"
    code, screen = run_on_pty(["restart", "-g", "rg-t", "--journal", str(journal),
                               "--config", str(config_file(tmp_path))], signal_at=("[y/N]", signal.SIGINT))
    assert code == 130, screen
    assert "interrupted (SIGINT) while waiting for confirmation: no request was sent" in screen
    assert sim.stats()[WRITES] == 0 and not journal.exists()


def test_sigterm_while_planning_exits_143_at_once_with_nothing_sent(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """The inventory is throttled (a 429 with Retry-After 30 s): SIGTERM ends it now, not after the retry."""
    sim = make_sim(fleet(2))
    sim.faults({"operation": "listAll", "error": 429, "times": "always", "retry_after": 30})
    journal = tmp_path / "j.jsonl"
    proc, err = spawn(tmp_path, "restart", "-g", "rg-t", "--yes", "--journal", journal,
                      "--config", config_file(tmp_path))
    try:
        poll_until(lambda: sim.stats()["by_operation"].get("virtualMachines.listAll", 0) >= 1, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, timeout=10) == 143, err.read_text()
    assert "interrupted (SIGTERM) while planning: no request was sent" in err.read_text()
    assert sim.stats()[WRITES] == 0 and not journal.exists()


def test_sigterm_during_execution_lets_in_flight_finish_writes_the_report_and_exits_143(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(4, lro=2))
    journal, report = tmp_path / "j.jsonl", tmp_path / "r.json"
    proc, err = spawn(tmp_path, "restart", "-g", "rg-t", "--yes", "--parallel", "2", "--journal", journal,
                      "--report", report, "--config", config_file(tmp_path))
    try:
        poll_until(lambda: journal.exists() and len(of_type(records(journal), "accepted")) >= 1, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
    assert exit_code(proc) == 143, err.read_text()
    recs = records(journal)
    (stop,) = of_type(recs, "interrupted")
    assert stop["signal"] == "SIGTERM" and stop["phase"] == "execution" and not stop["abandoned"]
    assert of_type(recs, "end")[-1]["interrupted"] is True
    outcomes = {o["index"]: o["status"] for o in of_type(recs, "outcome")}
    sent = {a["index"] for a in of_type(recs, "accepted")}
    assert sorted(outcomes) == [0, 1, 2, 3] and sim.stats()["by_operation"]["virtualMachines.restart"] == len(sent)
    assert all(outcomes[i] == ("succeeded" if i in sent else "cancelled") for i in outcomes)
    rep = json.loads(report.read_text())["data"]
    assert rep["interrupted"] is True and rep["exitCode"] == 143
    text = err.read_text()
    assert f"continue: vmctl resume {journal}" in text and "JOURNAL" not in text.split("interrupted (SIGTERM)")[-1]


def test_sigint_during_the_evidence_wait_writes_the_report_and_exits_130(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(2, activity_delay=3600))
    journal, report = tmp_path / "j.jsonl", tmp_path / "r.md"
    proc, err = spawn(tmp_path, "restart", "-g", "rg-t", "--yes", "--journal", journal, "--report", report,
                      "--config", config_file(tmp_path))
    try:
        poll_until(lambda: "evidence: waiting up to" in err.read_text(), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    assert exit_code(proc) == 130, err.read_text()
    recs = records(journal)
    (stop,) = of_type(recs, "interrupted")
    assert stop["signal"] == "SIGINT" and stop["phase"] == "evidence"
    assert of_type(recs, "evidence-status") and of_type(recs, "end")[-1]["interrupted"] is True
    assert [o["status"] for o in of_type(recs, "outcome")] == ["succeeded", "succeeded"]
    assert "exit code 130" in report.read_text()
    text = err.read_text()
    assert "while waiting for Activity Log evidence" in text
    assert f"evidence: vmctl evidence --journal {journal} --wait 10m" in text and f"vmctl report {journal}" in text
    assert sim.stats()["by_operation"]["virtualMachines.restart"] == 2


def test_sigint_while_the_report_is_written_finishes_it_and_exits_130(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """stdout is a pipe of one page nobody reads yet: the JSON report blocks on it, the signal
    arrives, the report is still written whole and the command exits 130; the journal is complete."""
    make_sim(fleet(12))
    journal, report = tmp_path / "j.jsonl", tmp_path / "r.md"
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc, err = spawn(tmp_path, "restart", "-g", "rg-t", "--yes", "--no-evidence-wait", "-o", "json",
                      "--journal", journal, "--report", report, "--config", config_file(tmp_path), stdout=write_end)
    os.close(write_end)
    try:
        poll_until(lambda: f"report: {report}" in err.read_text(), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read()
    assert exit_code(proc) == 130, err.read_text()
    assert json.loads(out)["data"]["summary"]["succeeded"] == 12       # the whole report
    assert of_type(records(journal), "end")[-1]["interrupted"] is False  # the run itself had ended
    assert f"vmctl report {journal}" in err.read_text()
