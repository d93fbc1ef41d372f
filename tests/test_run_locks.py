"""One run per VM at a time, through the CLI: a second run, or a second resume of one journal,
refuses the VMs a live run holds (exit 4, the holder named) and sends nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from typer.testing import CliRunner

from conftest import SimHandle, poll_until
from test_exactly_once import config, fleet, records, started
from vmctl.cli import app

runner = CliRunner()


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vmctl", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def count(journal: Path, type_: str) -> int:
    return sum(1 for x in records(journal) if x["type"] == type_) if journal.exists() else 0


def test_a_second_run_on_the_same_vms_is_refused_and_names_the_holder(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(3, restart=0.5))
    cfg, first = config(tmp_path), tmp_path / "first.jsonl"
    # the first run drains each VM (its pre-hook) before restarting it: the VMs still look idle
    proc = spawn("restart", "-g", "rg-t", "--yes", "--journal", first, "--no-evidence-wait", "--config", cfg,
                 "--pre-hook", "sleep 3")
    try:
        poll_until(lambda: count(first, "locks") == 1, timeout=30)
        # a deallocate racing the restart (one VM overlaps): refused, nothing sent, no journal made
        second = tmp_path / "second.jsonl"
        r = vmctl("deallocate", "-g", "rg-t", "-n", "vm-01", "--yes", "--journal", second, "--config", cfg)
        assert r.exit_code == 4, r.output
        assert "another vmctl run holds 1 of the 1 VMs" in r.stderr and f"journal {first}" in r.stderr
        assert "Nothing was locked and nothing was changed" in r.stderr
        assert not second.exists()
        assert started(sim) == 0
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # the first run released its locks: the same command now runs
    r = vmctl("deallocate", "-g", "rg-t", "-n", "vm-01", "--yes", "--no-evidence-wait", "--config", cfg)
    assert r.exit_code == 0, r.output


def test_two_resumes_of_one_journal_the_second_refuses_and_each_vm_gets_one_operation(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(2, restart=3.0))
    cfg, journal = config(tmp_path), tmp_path / "j.jsonl"
    run = spawn("restart", "-g", "rg-t", "--yes", "--journal", journal, "--no-evidence-wait", "--config", cfg)
    poll_until(lambda: count(journal, "accepted") == 2, timeout=30)
    run.send_signal(signal.SIGKILL)  # its locks are left behind, held by a dead process
    run.communicate(timeout=10)
    first = spawn("resume", journal, "--yes", "--no-evidence-wait", "--config", cfg)
    try:
        poll_until(lambda: count(journal, "resume") == 1, timeout=30)
        r = vmctl("resume", journal, "--yes", "--no-evidence-wait", "--config", cfg)
        assert r.exit_code == 4, r.output
        assert "another vmctl run holds 2 of the 2 VMs" in r.stderr
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    locks = [x for x in records(journal) if x["type"] == "locks"]
    assert len(locks) == 2 and len(locks[1]["stale"]) == 2  # the killed run's locks, found stale and taken over
    assert started(sim) == 2  # one restart per VM in all
