"""Power operations under stress, end to end: CLI -> real SDK -> simulator.

Throttling storms, injected faults, Ctrl-C at several points followed by `vmctl resume`, hooks that
fail or hang, tokens that expire mid-run, and no secret in anything vmctl writes. Nothing is
mocked; waits poll with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from typer.testing import CliRunner

from conftest import SUB_A, SimHandle, poll_until
from ptyrun import wait_or_kill
from vmctl.cli import app

runner = CliRunner()
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
DEALLOCATE_POST = "virtualMachines.deallocate"


# ---------------------------------------------------------------------------- helpers
def fleet(n: int, *, rg: str = "rg-t", prefix: str = "vm", lro: float = 0.3, power_state: str = "running",
          throttling: dict[str, Any] | None = None, token_lifetime: float | None = None) -> dict[str, Any]:
    """A one-group fleet of `n` identical dev VMs named {prefix}-00.., with LROs of `lro` seconds."""
    time_cfg: dict[str, Any] = {"lro_seconds": {op: lro for op in ("powerOff", "deallocate", "start", "restart")},
                                "activity_log_delay_seconds": 0.2, "lro_retry_after": 0.05}
    if token_lifetime is not None:
        time_cfg["token_lifetime_seconds"] = token_lifetime
    doc: dict[str, Any] = {
        "tenant_id": "11111111-0000-0000-0000-000000000000", "identity": {"upn": "tester@contoso.example"},
        "time": time_cfg, "paging": {"vms": 50},
        "subscriptions": [{"id": SUB_A, "name": "test-sub-a", "resource_groups": [
            {"name": rg, "vms": [{"name": prefix + "-{i:02d}", "count": n, "start": 0, "power_state": power_state,
                                  "tags": {"env": "dev"}}]}]}],
    }
    if throttling is not None:
        doc["throttling"] = throttling
    return doc


def vmctl(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def of_type(recs: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [r for r in recs if r.get("type") == type_]


def report_data(journal: Path) -> dict[str, Any]:
    """`vmctl report JOURNAL -o json`: the run re-rendered from its journal alone."""
    r = vmctl("report", journal, "-o", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["data"]


def by_name(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rep["vms"]}


def config_file(tmp_path: Path, poll_interval: float = 0.2) -> Path:
    p = tmp_path / "vmctl.toml"
    p.write_text(f"[execution]\npoll_interval = {poll_interval}\n", encoding="utf-8")
    return p


def writes_by_op(sim: SimHandle, op: str = DEALLOCATE_POST) -> int:
    return int(sim.stats()["by_operation"].get(op, 0))


# ---------------------------------------------------------------------------- 1. throttling
def test_throttling_storm_every_vm_succeeds(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """A write bucket of 3 (refill 5/s) against 30 deallocations: pacing and Retry-After carry every VM."""
    sim = make_sim(fleet(30, throttling={"arm": {"writes": {"capacity": 3, "per_second": 5}}}))
    journal = tmp_path / "storm.jsonl"
    r = vmctl("deallocate", "-g", "rg-t", "--yes", "--max-targets", "100", "--journal", journal,
              "--config", config_file(tmp_path), "-o", "json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert rep["exitCode"] == 0
    assert [v["outcome"] for v in rep["vms"]] == ["succeeded"] * 30
    assert rep["summary"]["failed"] == 0
    assert all(v["after"] == "deallocated" for v in rep["vms"])
    recs = records(journal)
    outcomes = of_type(recs, "outcome")
    assert len(outcomes) == 30 and all(o["status"] == "succeeded" for o in outcomes)
    assert not any("throttl" in (o["reason"] or "").lower() or "gave up" in (o["reason"] or "") for o in outcomes)
    stats = sim.stats()
    # throttled requests (if pacing did not avoid them all) were retried, never turned into failures:
    # exactly one accepted POST per VM, and every retry the journal shows is in the report's column
    assert stats["by_status"].get("202", 0) >= 30
    accepted = of_type(recs, "accepted")
    assert sorted(a["index"] for a in accepted) == list(range(30))
    retries = of_type(recs, "retry")
    assert sum(v["retries"] for v in rep["vms"]) == len(retries)
    throttled_writes = stats["throttled_by_bucket"].get("SubscriptionWrites", 0) + \
        sum(n for b, n in stats["throttled_by_bucket"].items() if "DeleteVM" in b)
    assert len(retries) == throttled_writes, (retries, stats)
    assert stats["by_operation"][DEALLOCATE_POST] == 30 + throttled_writes


def test_injected_429s_are_retried_and_counted(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(4))
    sim.faults({"operation": "deallocate", "error": "429", "times": 3, "retry_after": 1})
    journal = tmp_path / "j.jsonl"
    r = vmctl("deallocate", "-g", "rg-t", "--yes", "--journal", journal, "--config", config_file(tmp_path),
              "-o", "json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert [v["outcome"] for v in rep["vms"]] == ["succeeded"] * 4
    assert sum(v["retries"] for v in rep["vms"]) == 3
    retries = of_type(records(journal), "retry")
    assert len(retries) == 3 and all("throttled" in x["reason"] and x["wait"] == 1 for x in retries)
    assert sim.stats()["by_operation"][DEALLOCATE_POST] == 4 + 3
    table = vmctl("report", journal)
    assert table.exit_code == 0 and "RETRIES" in table.stdout


# ---------------------------------------------------------------------------- 2. injected faults
def test_each_injected_fault_leaves_a_truthful_outcome(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(6, prefix="f"))
    sim.faults(
        {"vm": "f-00", "operation": "deallocate", "error": "500", "times": 1, "retry_after": 1},
        {"vm": "f-01", "operation": "deallocate", "error": "503", "times": 2, "retry_after": 1},
        {"vm": "f-02", "operation": "deallocate", "error": "409", "times": 1, "retry_after": 1},
        {"vm": "f-03", "operation": "deallocate", "error": "drop", "times": 1},
        {"vm": "f-04", "operation": "deallocate", "error": "slow", "delay_seconds": 120},
        {"operation": "operations.get", "error": "drop", "times": 1},
    )
    journal, report = tmp_path / "faults.jsonl", tmp_path / "faults.json"
    r = vmctl("deallocate", "-g", "rg-t", "--yes", "--timeout", "4", "--journal", journal, "--report", report,
              "--config", config_file(tmp_path), "-o", "json", "--evidence-wait", "1s")
    assert r.exit_code == 3, r.output  # partial: two failed, the others succeeded
    rep = json.loads(r.stdout)["data"]
    assert rep["exitCode"] == 3
    names = [v["name"] for v in rep["vms"]]
    assert names == [f"f-{i:02d}" for i in range(6)]                 # keyed and ordered by input ...
    completion = [o["vm"].rsplit("/", 1)[-1] for o in of_type(records(journal), "outcome")]
    assert sorted(completion) == names and completion != names       # ... not by completion
    vms = by_name(rep)
    assert {n: v["outcome"] for n, v in vms.items()} == {
        "f-00": "succeeded", "f-01": "succeeded", "f-02": "failed", "f-03": "succeeded",
        "f-04": "failed", "f-05": "succeeded"}
    # a 409 is a refusal, never retried (Azure's 409s are state refusals: wire contract §15)
    assert {n: v["retries"] for n, v in vms.items()} == {"f-00": 1, "f-01": 2, "f-02": 0, "f-03": 1, "f-04": 0, "f-05": 0}
    assert "(Conflict)" in vms["f-02"]["reason"] and vms["f-02"]["after"] == "running"
    assert "timed out after 4 s" in vms["f-04"]["reason"] and vms["f-04"]["correlationId"] in vms["f-04"]["reason"]
    for n in ("f-00", "f-01", "f-03", "f-05"):
        assert vms[n]["after"] == "deallocated" and vms[n]["reason"] == "", vms[n]
    assert vms["f-04"]["after"] == "deallocating"  # the truth at verify time: still running on the platform
    reasons = {x["vm"].rsplit("/", 1)[-1]: x["reason"] for x in of_type(records(journal), "retry")}
    assert "HTTP 500" in reasons["f-00"] and "HTTP 503" in reasons["f-01"]
    assert "f-02" not in reasons
    assert "connection lost" in reasons["f-03"]
    # every fault fired; every VM's POST was accepted exactly once
    assert all(f["remaining"] in (0, "always") and f["fired"] >= 1
               for f in sim.control("GET", "/_sim/faults")["faults"])
    assert sim.stats()["by_status"]["202"] == 5 and sim.stats()["by_status"]["409"] == 1
    assert json.loads(report.read_text())["data"]["vms"] == rep["vms"]
    assert len([line for line in r.stderr.splitlines() if line.startswith("[")]) == 6  # one line per VM

    # an LRO that ends Failed: the code is in the reason; partial (3), then total (1) failure
    sim.faults({"vm": "f-01", "operation": "start", "error": "AllocationFailed"},
               {"vm": "f-03", "operation": "start", "error": "AllocationFailed"})
    r = vmctl("start", "-g", "rg-t", "-n", "f-00", "-n", "f-01", "-n", "f-02", "--yes", "-o", "json",
              "--config", config_file(tmp_path))
    assert r.exit_code == 3, r.output
    vms = by_name(json.loads(r.stdout)["data"])
    # f-02 was never deallocated (its 409 was a refusal): already running, nothing sent
    assert [vms[n]["outcome"] for n in ("f-00", "f-01", "f-02")] == ["succeeded", "failed", "skipped"]
    assert "AllocationFailed" in vms["f-01"]["reason"] and vms["f-01"]["retries"] == 0
    assert vms["f-01"]["after"] == "deallocated" and vms["f-00"]["after"] == "running"
    r = vmctl("start", "-g", "rg-t", "-n", "f-03", "--yes", "-o", "json", "--config", config_file(tmp_path))
    assert r.exit_code == 1, r.output
    only = json.loads(r.stdout)["data"]["vms"]
    assert [(v["name"], v["outcome"]) for v in only] == [("f-03", "failed")] and "AllocationFailed" in only[0]["reason"]


# ---------------------------------------------------------------------------- 3. interruption and resume
def _interrupt_twice_once_in_flight(proc: subprocess.Popen[str], journal: Path, err: Path) -> None:
    """Ctrl-C once two operations are accepted, then again: the wait is abandoned, exit 130."""
    try:
        poll_until(_journal_has(journal, "accepted", 2), timeout=30)
        proc.send_signal(signal.SIGINT)
        poll_until(lambda: "stopping: no new operations" in err.read_text(), timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
    assert _wait_exit(proc, timeout=10) == 130, err.read_text()


def _spawn(tmp_path: Path, *args: str | Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """`python -m vmctl ...` in its own process (signals go to it alone), env from the simulator."""
    n = len(list(tmp_path.glob("stdout-*.txt")))
    out, err = tmp_path / f"stdout-{n}.txt", tmp_path / f"stderr-{n}.txt"
    proc = subprocess.Popen([sys.executable, "-m", "vmctl", *[str(a) for a in args]], env=dict(os.environ),
                            stdout=out.open("w"), stderr=err.open("w"), stdin=subprocess.DEVNULL, text=True)
    return proc, out, err


_wait_exit = wait_or_kill


def _journal_has(journal: Path, type_: str, n: int = 1) -> Callable[[], bool]:
    return lambda: journal.exists() and len(of_type(records(journal), type_)) >= n


def _one_outcome_per_step(recs: list[dict[str, Any]], n: int) -> dict[int, dict[str, Any]]:
    outs = of_type(recs, "outcome")
    assert sorted(o["index"] for o in outs) == list(range(n)), outs   # exactly one per step
    return {o["index"]: o for o in outs}


def _resume_finishes(sim: SimHandle, journal: Path, n: int, tmp_path: Path) -> None:
    """`vmctl resume` ends every VM deallocated without repeating a step; the report says all succeeded."""
    r = vmctl("resume", journal, "--yes", "-o", "json", "--config", config_file(tmp_path))
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert [v["outcome"] for v in rep["vms"]] == ["succeeded"] * n
    assert [v["after"] for v in rep["vms"]] == ["deallocated"] * n
    assert writes_by_op(sim) == n  # one deallocate POST per VM over both runs: nothing repeated
    again = report_data(journal)
    assert again["exitCode"] == 0 and again["summary"]["succeeded"] == n and not again["interrupted"]
    assert again["resumed"] == 1
    # the report says when it was interrupted and resumed, in order
    assert again["interruptions"] and len(again["resumes"]) == 1
    assert again["interruptions"][0]["at"] < again["resumes"][0]["at"]
    shown = vmctl("report", journal).stdout
    assert f"resumed 1 time: interrupted at {again['interruptions'][0]['at']}" in shown
    assert f"resumed at {again['resumes'][0]['at']} by " in shown


def test_sigint_lets_in_flight_finish_then_resume_completes(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    n = 5
    sim = make_sim(fleet(n, lro=3))
    journal = tmp_path / "a.jsonl"
    proc, _, err = _spawn(tmp_path, "deallocate", "-g", "rg-t", "--yes", "--parallel", "2", "--journal", journal,
                          "--config", config_file(tmp_path))
    try:
        poll_until(_journal_has(journal, "accepted"), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    assert _wait_exit(proc) == 130, err.read_text()
    assert "stopping: no new operations" in err.read_text()
    recs = records(journal)
    assert of_type(recs, "interrupted") and of_type(recs, "end")[-1]["interrupted"] is True
    outs = _one_outcome_per_step(recs, n)
    sent = {x["index"] for x in of_type(recs, "accepted")}
    assert sent and len(sent) <= 2 and {x["index"] for x in of_type(recs, "request")} == sent
    for i, o in outs.items():  # in-flight operations finished; nothing new started
        assert o["status"] == ("succeeded" if i in sent else "cancelled"), o
    assert writes_by_op(sim) == len(sent)
    assert report_data(journal)["exitCode"] == 130
    _resume_finishes(sim, journal, n, tmp_path)


def test_second_sigint_abandons_the_wait_then_resume_completes(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    n = 4
    sim = make_sim(fleet(n, lro=3))
    journal = tmp_path / "b.jsonl"
    proc, _, err = _spawn(tmp_path, "deallocate", "-g", "rg-t", "--yes", "--parallel", "2", "--journal", journal,
                          "--config", config_file(tmp_path))
    _interrupt_twice_once_in_flight(proc, journal, err)
    recs = records(journal)
    assert of_type(recs, "interrupted")[-1]["abandoned"] is True
    outs = _one_outcome_per_step(recs, n)
    sent = {x["index"] for x in of_type(recs, "accepted")}
    assert len(sent) == 2
    for i, o in outs.items():
        assert o["status"] == ("in-flight" if i in sent else "cancelled"), o
        if i in sent:
            assert o["correlationId"] and o["correlationId"] in o["reason"]
    assert not of_type(recs, "verify")  # the wait was abandoned: no after snapshot pretends to be final
    rep = report_data(journal)
    assert rep["exitCode"] == 130 and rep["summary"]["in-flight"] == 2
    _resume_finishes(sim, journal, n, tmp_path)


def test_sigint_during_a_pre_hook_then_resume_completes(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    n = 3
    sim = make_sim(fleet(n, lro=0.5))
    marker, delay = tmp_path / "hook-started.txt", tmp_path / "delay"
    delay.write_text("2")
    hook = f'echo "$VMCTL_VM_NAME" >> {marker}; sleep "$(cat {delay})"; echo "drained $VMCTL_VM_NAME"'
    journal = tmp_path / "c.jsonl"
    proc, _, err = _spawn(tmp_path, "deallocate", "-g", "rg-t", "--yes", "--parallel", "2", "--journal", journal,
                          "--pre-hook", hook, "--config", config_file(tmp_path))
    try:
        poll_until(lambda: marker.exists() and len(marker.read_text().split()) == 2, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    assert _wait_exit(proc) == 130, err.read_text()
    recs = records(journal)
    hooks = of_type(recs, "hook")
    assert len(hooks) == 2 and all(h["ok"] and "drained" in h["output"] for h in hooks)  # hooks were let finish
    outs = _one_outcome_per_step(recs, n)
    assert all(o["status"] == "cancelled" for o in outs.values())  # ... but no action was launched after Ctrl-C
    assert not of_type(recs, "request") and writes_by_op(sim) == 0
    delay.write_text("0")
    _resume_finishes(sim, journal, n, tmp_path)
    assert len(of_type(records(journal), "hook")) == 2 + n  # resume drains again before acting


def test_resume_does_not_resend_an_operation_that_failed_while_abandoned(
        make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    """An in-flight start that ends AllocationFailed after the wait was abandoned: resume reports the
    failure from the operation's own status instead of sending the start again."""
    sim = make_sim(fleet(2, lro=1.5, power_state="deallocated"))
    sim.faults({"vm": "vm-00", "operation": "start", "error": "AllocationFailed"})
    journal = tmp_path / "d.jsonl"
    proc, _, err = _spawn(tmp_path, "start", "-g", "rg-t", "--yes", "--journal", journal,
                          "--config", config_file(tmp_path))
    _interrupt_twice_once_in_flight(proc, journal, err)
    assert {o["status"] for o in of_type(records(journal), "outcome")} == {"in-flight"}

    def settled() -> bool:
        r = vmctl("list", "-g", "rg-t", "-o", "json")
        return all(v["provisioningState"].lower() != "updating" for v in json.loads(r.stdout)["data"])
    poll_until(settled, timeout=15, interval=0.2)
    r = vmctl("resume", journal, "--yes", "-o", "json", "--config", config_file(tmp_path))
    assert r.exit_code == 3, r.output
    vms = by_name(json.loads(r.stdout)["data"])
    assert vms["vm-00"]["outcome"] == "failed" and "AllocationFailed" in vms["vm-00"]["reason"]
    assert vms["vm-01"]["outcome"] == "succeeded" and vms["vm-01"]["after"] == "running"
    assert writes_by_op(sim, "virtualMachines.start") == 2  # one start per VM: nothing was sent again


# ---------------------------------------------------------------------------- 4. hooks
def test_hooks_skip_fail_and_see_the_vm(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(4, prefix="h"))
    env_log = tmp_path / "hook-env.txt"
    script = tmp_path / "hook.sh"
    script.write_text(f"""#!/bin/sh
echo "$VMCTL_HOOK_PHASE|$VMCTL_ACTION|$VMCTL_VM_NAME|$VMCTL_VM_ID|$VMCTL_RESOURCE_GROUP|$VMCTL_SUBSCRIPTION" >> {env_log}
case "$VMCTL_HOOK_PHASE/$VMCTL_VM_NAME" in
  pre/h-01) echo "draining h-01"; echo "drain failed: 3 sessions still open" >&2; exit 7;;
  pre/h-02) echo "waiting for connections to close"; sleep 30;;
  post/h-03) echo "GET /healthz -> 503"; exit 1;;
esac
echo "ok $VMCTL_HOOK_PHASE $VMCTL_VM_NAME"
""")
    script.chmod(0o755)
    journal = tmp_path / "pre.jsonl"
    r = vmctl("deallocate", "-g", "rg-t", "--yes", "--pre-hook", script, "--hook-timeout", "1", "--journal", journal,
              "-o", "json", "--config", config_file(tmp_path))
    assert r.exit_code == 3, r.output
    vms = by_name(json.loads(r.stdout)["data"])
    assert {n: v["outcome"] for n, v in vms.items()} == {
        "h-00": "succeeded", "h-01": "skipped", "h-02": "skipped", "h-03": "succeeded"}
    assert "exited 7" in vms["h-01"]["reason"] and "drain failed: 3 sessions still open" in vms["h-01"]["reason"]
    assert "timed out after 1 s" in vms["h-02"]["reason"] and "waiting for connections to close" in vms["h-02"]["reason"]
    assert vms["h-01"]["after"] == vms["h-02"]["after"] == "running"  # skipped: no request sent for them
    assert writes_by_op(sim) == 2
    hooks = {h["vm"].rsplit("/", 1)[-1]: h for h in of_type(records(journal), "hook")}
    assert hooks["h-01"]["returncode"] == 7 and "draining h-01" in hooks["h-01"]["output"]
    assert hooks["h-02"]["returncode"] is None and not hooks["h-02"]["ok"]
    assert hooks["h-00"]["ok"] and hooks["h-00"]["output"] == "ok pre h-00"

    journal = tmp_path / "post.jsonl"
    r = vmctl("start", "-g", "rg-t", "-n", "h-00", "-n", "h-03", "--yes", "--post-hook", script, "--journal", journal,
              "-o", "json", "--config", config_file(tmp_path))
    assert r.exit_code == 3, r.output
    vms = by_name(json.loads(r.stdout)["data"])
    assert vms["h-00"]["outcome"] == "succeeded"
    assert vms["h-03"]["outcome"] == "failed" and "health check failed" in vms["h-03"]["reason"]
    assert "GET /healthz -> 503" in vms["h-03"]["reason"] and vms["h-03"]["after"] == "running"
    post = {h["vm"].rsplit("/", 1)[-1]: h for h in of_type(records(journal), "hook")}
    assert post["h-03"]["phase"] == "post" and post["h-03"]["output"] == "GET /healthz -> 503"

    seen = [line.split("|") for line in env_log.read_text().splitlines()]
    vm_id = f"/subscriptions/{SUB_A}/resourceGroups/rg-t/providers/Microsoft.Compute/virtualMachines/"
    assert sorted(seen) == sorted(
        [["pre", "deallocate", f"h-0{i}", vm_id + f"h-0{i}", "rg-t", SUB_A] for i in range(4)]
        + [["post", "start", f"h-0{i}", vm_id + f"h-0{i}", "rg-t", SUB_A] for i in (0, 3)])


# ---------------------------------------------------------------------------- 5. tokens
def test_token_expiring_mid_run_costs_no_vm_its_outcome(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(6, lro=3, token_lifetime=2))
    r = vmctl("deallocate", "-g", "rg-t", "--yes", "--parallel", "3", "-o", "json",
              "--config", config_file(tmp_path))
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)["data"]
    assert [v["outcome"] for v in rep["vms"]] == ["succeeded"] * 6
    assert [v["after"] for v in rep["vms"]] == ["deallocated"] * 6
    stats = sim.stats()
    assert stats["tokens_issued"] > 1
    assert "401" not in stats["by_status"]


# ---------------------------------------------------------------------------- 6. secrets
def test_no_token_or_secret_in_journal_report_or_logs(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(fleet(3, lro=1, token_lifetime=2))
    secret = sim.env["IDENTITY_HEADER"]
    journal, md = tmp_path / "s.jsonl", tmp_path / "s.md"
    proc, out, err = _spawn(tmp_path, "deallocate", "-g", "rg-t", "--yes", "--debug", "--journal", journal,
                            "--report", md, "--ticket", "CHG-1", "--pre-hook", "echo draining", "-o", "json",
                            "--config", config_file(tmp_path))
    assert _wait_exit(proc, timeout=60) == 0, err.read_text()[-3000:]
    logs = err.read_text()
    assert "/msi/token" in logs and "Request URL" in logs  # the debug log really covers the HTTP traffic
    rj = tmp_path / "s.json"
    again = vmctl("report", journal, "--report", rj, "-o", "markdown")
    assert again.exit_code == 0
    texts = {"journal": journal.read_text(), "report.md": md.read_text(), "report.json": rj.read_text(),
             "stdout": out.read_text(), "stderr": logs, "report command": again.output}
    assert sim.stats()["tokens_issued"] >= 2
    for where, text in texts.items():
        assert text, where
        assert secret not in text, f"IDENTITY_HEADER value written to {where}"
        assert not JWT.search(text), f"a JWT written to {where}: {JWT.search(text).group(0)[:40]}..."  # type: ignore[union-attr]
    assert "tester@contoso.example" in texts["report.md"]  # the principal is named, its token is not
