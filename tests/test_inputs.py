"""Malformed input is refused cleanly: exit 2, one sentence naming the problem and the fix, no
traceback, no "internal error", and not a single write (issue 10, "fail closed").

INPUTS is the one table of every malformed input tried. Its rows are either a command line run
through the CLI against a simulator (writes counted: must stay 0; `upfront` rows must not send
any ARM request at all) or a fleet the simulator must refuse. The action-command rows rely on
vmctl/cli/actions.py calling vmctl/preflight.py and vmctl/timefmt.parse_seconds before the
first request.

The rest of the file unit-tests the helpers the CLI calls: preflight, timefmt, journal, config.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from conftest import BASIC, SUB_A, SimHandle
from vmctl.cli import app
from vmctl.config import load_config, parse_config
from vmctl.errors import ConfigError, InputError
from vmctl.simulator import Simulator
from vmctl.simulator.fleet import FleetError, load_fleet

runner = CliRunner()
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# ----------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One malformed input. `argv`: a command line ({tmp} is the test's directory), with `files`
    created first (bytes: a file; None: a directory; a name ending in '*': created without the
    execute bit...) and `env`/`stdin`. Or `fleet`: a fleet mapping the simulator must refuse."""

    fragment: str
    argv: list[str] = field(default_factory=list)
    files: dict[str, bytes | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    upfront: bool = True          # refused before any ARM request
    fleet: dict[str, Any] | None = None


def _journal_lines(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in records).encode()


def valid_journal() -> bytes:
    from vmctl.models import Vm
    from vmctl.planner import Options, build_plan, plan_json

    vm = Vm(subscription_id=SUB_A, subscription_name="test-sub-a", resource_group="rg-app", name="app-01",
            location="westeurope", id=f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.Compute/"
            "virtualMachines/app-01", tags={"env": "dev"}, power_state="deallocated")
    plan = build_plan("start", [vm], Options())
    return _journal_lines({"ts": "2026-01-01T00:00:00Z", "type": "run", "runId": plan.run_id, "command": "vmctl start"},
                          {"ts": "2026-01-01T00:00:00Z", "type": "plan", "plan": plan_json(plan)},
                          {"ts": "2026-01-01T00:00:01Z", "type": "end", "interrupted": False})


RUN_ONLY = _journal_lines({"ts": "2026-01-01T00:00:00Z", "type": "run", "runId": "20260101T000000Z-abcdef"})
BAD_PLAN = RUN_ONLY + _journal_lines({"ts": "2026-01-01T00:00:00Z", "type": "plan", "plan": {"steps": []}})
NOT_UTF8 = b'{"type": "run", "runId": "x\xff\xfe"}\n'
DRY = ["deallocate", "-n", "app-01", "--dry-run"]          # an action command that sends no write
REAL = ["deallocate", "-n", "app-01", "--yes", "--no-evidence-wait"]
SUB = "00000000-0000-0000-0000-000000000001"


def _fleet(**extra: Any) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "resource_groups": [{"name": "rg", "vms": [{"name": "a"}]}]}], **extra}


def _vms(**vm: Any) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "resource_groups": [{"name": "rg", "vms": [{"name": "a-{i}", **vm}]}]}]}


INPUTS = [
    # --- config file (vmctl/config.py)
    pytest.param(Row("production.rules[0] has no condition", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[production]\ndefault_rule = false\n[[production.rules]]\ntags = []\n"}),
                 id="config-rule-empty-tags"),
    pytest.param(Row("production.rules[0] has no condition", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[production]\ndefault_rule = false\n[[production.rules]]\ntags = []\nvalues = []\n"
                                b"resource_groups = []\nsubscriptions = []\n"}), id="config-rule-all-lists-empty"),
    pytest.param(Row("production.rules[0].tags: an empty string matches nothing", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[[production.rules]]\ntags = [\"\"]\n"}), id="config-rule-empty-string"),
    pytest.param(Row("production.default_rule must be true or false", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[production]\ndefault_rule = \"no\"\n"}), id="config-bool-as-string"),
    pytest.param(Row("selection.tag_values_case_sensitive must be true or false", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[selection]\ntag_values_case_sensitive = \"false\"\n"}), id="config-bool-as-string-2"),
    pytest.param(Row("is not UTF-8 text", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"output = \"t\xe9ble\"\n"}), id="config-not-utf8"),
    pytest.param(Row("execution.pace_scale must be a positive number", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[execution]\npace_scale = nan\n"}), id="config-nan"),
    pytest.param(Row("execution.poll_interval must be a positive number", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[execution]\npoll_interval = inf\n"}), id="config-inf"),
    pytest.param(Row("safety.max_targets must be a positive whole number", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[safety]\nmax_targets = true\n"}), id="config-bool-as-number"),
    pytest.param(Row("arm_endpoint must be a string", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"arm_endpoint = 5\n"}), id="config-endpoint-not-string"),
    pytest.param(Row("production.rules must be an array of tables", ["list", "--config", "{tmp}/c.toml"],
                     {"c.toml": b"[production]\nrules = \"env=prod\"\n"}), id="config-rules-not-array"),
    # --- --ids, --output, --query (vmctl/cli/_common.py, vmctl/preflight.py)
    pytest.param(Row("--ids @{tmp}/ids.txt: {tmp}/ids.txt is not UTF-8 text", ["list", "--ids", "@{tmp}/ids.txt"],
                     {"ids.txt": b"/subscriptions/\xff\n"}), id="ids-file-not-utf8"),
    pytest.param(Row("--ids @{tmp}/d: {tmp}/d is a directory", ["list", "--ids", "@{tmp}/d"], {"d": None}),
                 id="ids-file-is-directory"),
    pytest.param(Row("--ids @ needs a file name", ["list", "--ids", "@"]), id="ids-at-without-file"),
    pytest.param(Row("--ids -: standard input is not UTF-8 text", ["list", "--ids", "-"], stdin=b"\xff\xfe\n"),
                 id="ids-stdin-not-utf8"),
    pytest.param(Row("--output is empty", ["list", "-o", ""]), id="output-empty"),
    pytest.param(Row("--tag 'a,\\x1b[2J': unexpected ','", ["list", "--tag", "a,\x1b[2J"]), id="tag-with-terminal-escape"),
    pytest.param(Row("--query '[?' is not a valid JMESPath expression", ["list", "--query", "[?"]),
                 id="query-invalid-list"),
    pytest.param(Row("--query is empty", ["list", "--query", " "]), id="query-empty"),
    pytest.param(Row("--query '[?' is not a valid JMESPath expression", ["show", "-g", "rg-app", "app-01", "--query", "[?"]),
                 id="query-invalid-show"),
    pytest.param(Row("--query 'foo[' is not a valid JMESPath expression", [*DRY, "--query", "foo["]),
                 id="query-invalid-action"),
    # --- durations (vmctl/timefmt.py)
    pytest.param(Row("--pause '999999h' is longer than 7 days",
                     ["maintenance", "start", "-g", "rg-app", "--dry-run", "--pause", "999999h"]), id="pause-too-long"),
    pytest.param(Row("is longer than 7 days", ["maintenance", "start", "-g", "rg-app", "--dry-run", "--pause", "9" * 400]),
                 id="pause-overflows-float"),
    pytest.param(Row("--evidence-wait '10000h' is longer than 7 days", [*DRY, "--evidence-wait", "10000h"]),
                 id="evidence-wait-too-long"),
    pytest.param(Row("--wait '30000m' is longer than 7 days", ["evidence", "--journal", "{tmp}/j.jsonl", "--wait", "30000m"],
                     {"j.jsonl": valid_journal()}), id="evidence-wait-flag-too-long"),
    pytest.param(Row("--timeout 'nan' is not a number of seconds", [*DRY, "--timeout", "nan"]),
                 id="timeout-nan"),
    pytest.param(Row("--timeout 'inf' is not a number of seconds", [*DRY, "--timeout", "inf"]),
                 id="timeout-inf"),
    pytest.param(Row("--timeout 1e+12 is more than 604800 seconds", [*DRY, "--timeout", "1e12"]),
                 id="timeout-too-long"),
    pytest.param(Row("--hook-timeout 'nan' is not a number of seconds", [*DRY, "--hook-timeout", "nan"]),
                 id="hook-timeout-nan"),
    pytest.param(Row("--hook-timeout 100000 is more than 86400 seconds", [*DRY, "--hook-timeout", "100000"]),
                 id="hook-timeout-too-long"),
    # --- hooks and output paths of action commands (preflight, to be called from actions.py)
    pytest.param(Row("--pre-hook './no-such-drain.sh': ./no-such-drain.sh does not exist",
                     [*DRY, "--pre-hook", "./no-such-drain.sh"]), id="pre-hook-missing"),
    pytest.param(Row("is not executable (chmod +x", [*DRY, "--post-hook", "{tmp}/check.sh"],
                     {"check.sh": b"#!/bin/sh\nexit 0\n"}), id="post-hook-not-executable"),
    pytest.param(Row("--hook-env 'TOKEN=...' gives a value", [*DRY, "--hook-env", "TOKEN=abc"]),
                 id="hook-env-with-value"),
    pytest.param(Row("has a newline or control character", [*DRY, "--ticket", "CHG-1\n# pwned"]),
                 id="ticket-with-newline"),
    pytest.param(Row("VMCTL_PACE_SCALE", [*DRY], env={"VMCTL_PACE_SCALE": "fast"}), id="pace-scale-not-a-number"),
    pytest.param(Row("does not exist", [*DRY, "--report", "{tmp}/nodir/r.md"]),
                 id="report-dir-missing"),
    pytest.param(Row("does not exist", [*DRY, "--plan-out", "{tmp}/nodir/plan.json"]),
                 id="plan-out-dir-missing"),
    pytest.param(Row("already exists; a journal is never overwritten", [*DRY, "--journal", "{tmp}/old.jsonl"],
                     {"old.jsonl": b"{}\n"}), id="journal-exists-dry-run"),
    pytest.param(Row("--journal {tmp}/old.jsonl already exists; a journal is never overwritten",
                     [*REAL, "--journal", "{tmp}/old.jsonl"], {"old.jsonl": b"{}\n"}, upfront=False),
                 id="journal-exists-real-run"),
    pytest.param(Row("is a directory", ["report", "{tmp}/j.jsonl", "--report", "{tmp}/d"],
                     {"j.jsonl": valid_journal(), "d": None}), id="report-path-is-directory"),
    pytest.param(Row("--bundle {tmp}/b is not empty", ["report", "{tmp}/j.jsonl", "--bundle", "{tmp}/b"],
                     {"j.jsonl": valid_journal(), "b/x": b"x"}), id="bundle-not-empty"),
    pytest.param(Row("is not a directory", ["report", "{tmp}/j.jsonl", "--bundle", "{tmp}/f"],
                     {"j.jsonl": valid_journal(), "f": b"x"}), id="bundle-is-a-file"),
    # --- journals (vmctl/journal.py): report, resume and evidence read them
    pytest.param(Row("{tmp}/j.jsonl is not a vmctl journal: it is not UTF-8 text", ["report", "{tmp}/j.jsonl"],
                     {"j.jsonl": NOT_UTF8}), id="journal-not-utf8"),
    pytest.param(Row("{tmp}/j.jsonl is not a vmctl journal: it is empty", ["report", "{tmp}/j.jsonl"], {"j.jsonl": b""}),
                 id="journal-empty"),
    pytest.param(Row("is not a vmctl journal: line 1 is not JSON", ["report", "{tmp}/j.jsonl"],
                     {"j.jsonl": b"hello, world\n"}), id="journal-not-jsonl"),
    pytest.param(Row("is not a vmctl journal: it does not start with a run record", ["report", "{tmp}/j.jsonl"],
                     {"j.jsonl": b"[1, 2, 3]\n"}), id="journal-json-not-a-record"),
    pytest.param(Row("is not a vmctl journal: no plan record", ["report", "{tmp}/j.jsonl"], {"j.jsonl": RUN_ONLY}),
                 id="journal-no-plan-report"),
    pytest.param(Row("is not a vmctl journal: no plan record", ["resume", "{tmp}/j.jsonl"], {"j.jsonl": RUN_ONLY}),
                 id="journal-no-plan-resume"),
    pytest.param(Row("is not a vmctl journal: no plan record", ["evidence", "--journal", "{tmp}/j.jsonl"],
                     {"j.jsonl": RUN_ONLY}), id="journal-no-plan-evidence"),
    pytest.param(Row("is not a vmctl journal: its plan record is damaged", ["report", "{tmp}/j.jsonl"],
                     {"j.jsonl": BAD_PLAN}), id="journal-damaged-plan"),
    pytest.param(Row("journal {tmp}/d is a directory", ["report", "{tmp}/d"], {"d": None}), id="journal-is-directory"),
    # --- evidence: the correlation id goes into an OData $filter
    pytest.param(Row("--correlation-id 'x' or 1 eq 1 or 'y' is not a correlation id (a GUID)",
                     ["evidence", "--correlation-id", "x' or 1 eq 1 or 'y"]), id="correlation-id-injection"),
    pytest.param(Row("is not a correlation id (a GUID)", ["evidence", "--correlation-id", "5f0d"]),
                 id="correlation-id-short"),
    pytest.param(Row("--since '99999999999999d' is out of range", ["evidence", "--since", "99999999999999d"]),
                 id="evidence-since-overflows"),
    pytest.param(Row("--to '9999999999999h' is out of range", ["evidence", "--from", "2h", "--to", "9999999999999h"]),
                 id="evidence-to-overflows"),
    pytest.param(Row("VMCTL_PACE_SCALE 'fast' is not a number", ["evidence", "--journal", "{tmp}/j.jsonl"],
                     {"j.jsonl": valid_journal()}, env={"VMCTL_PACE_SCALE": "fast"}), id="pace-scale-env-not-number"),
    # --- vmctl sim serve flags (a missing fleet is the backstop: without the check it fails differently)
    pytest.param(Row("--port 99999 is not a port number", ["sim", "serve", "--port", "99999", "--fleet", "{tmp}/none.yaml"]),
                 id="sim-port-too-big"),
    pytest.param(Row("--port -1 is not a port number", ["sim", "serve", "--port", "-1", "--fleet", "{tmp}/none.yaml"]),
                 id="sim-port-negative"),
    pytest.param(Row("--time-scale nan is not a number above 0", ["sim", "serve", "--time-scale", "nan", "--fleet",
                                                                   "{tmp}/none.yaml"]), id="sim-time-scale-nan"),
    pytest.param(Row("--time-scale inf is not a number above 0", ["sim", "serve", "--time-scale", "inf", "--fleet",
                                                                   "{tmp}/none.yaml"]), id="sim-time-scale-inf"),
    pytest.param(Row("--time-scale -2 is not a number above 0", ["sim", "serve", "--time-scale", "-2", "--fleet",
                                                                  "{tmp}/none.yaml"]), id="sim-time-scale-negative"),
    pytest.param(Row("--time-scale 0 is not a number above 0", ["sim", "serve", "--time-scale", "0", "--fleet",
                                                                 "{tmp}/none.yaml"]), id="sim-time-scale-zero"),
    pytest.param(Row("--fleet {tmp}/d is a directory", ["sim", "serve", "--fleet", "{tmp}/d"], {"d": None}),
                 id="sim-fleet-directory"),
    pytest.param(Row("fleet file {tmp}/f.yaml is not UTF-8 text", ["sim", "serve", "--fleet", "{tmp}/f.yaml"],
                     {"f.yaml": b"tenant_id: \xff\n"}), id="sim-fleet-not-utf8"),
    # --- fleet files the simulator must refuse (FleetError: `vmctl sim serve` exits 2 with it)
    pytest.param(Row("paging.vms: expected a whole number from 1", fleet=_fleet(paging={"vms": 0})), id="fleet-paging-zero"),
    pytest.param(Row("paging.activity_log: expected a whole number from 1", fleet=_fleet(paging={"activity_log": -5})),
                 id="fleet-paging-negative"),
    pytest.param(Row("paging.resources: expected a whole number", fleet=_fleet(paging={"resources": "many"})),
                 id="fleet-paging-not-number"),
    pytest.param(Row("vms[0].count: expected a whole number from 1 to 100000", fleet=_vms(count=10**9)),
                 id="fleet-count-huge"),
    pytest.param(Row("vms[0].start: expected a whole number", fleet=_vms(count=2, start="one")), id="fleet-start-not-number"),
    pytest.param(Row("time.lro_seconds.start: expected a duration from 0", fleet=_fleet(time={"lro_seconds": {"start": -5}})),
                 id="fleet-lro-negative"),
    pytest.param(Row("time.lro_seconds.start: expected a finite duration",
                     fleet=_fleet(time={"lro_seconds": {"start": math.nan}})), id="fleet-lro-nan"),
    pytest.param(Row("time.activity_log_delay_seconds: expected a finite duration",
                     fleet=_fleet(time={"activity_log_delay_seconds": math.inf})), id="fleet-delay-inf"),
    pytest.param(Row("time.activity_log_delay_seconds: expected a duration from 0",
                     fleet=_fleet(time={"activity_log_delay_seconds": "-1m"})), id="fleet-delay-negative"),
    pytest.param(Row("time.token_lifetime_seconds: expected a duration above 0",
                     fleet=_fleet(time={"token_lifetime_seconds": 0})), id="fleet-token-lifetime-zero"),
    pytest.param(Row("time.jitter: expected a number", fleet=_fleet(time={"jitter": math.nan})), id="fleet-jitter-nan"),
    pytest.param(Row("faults[0].delay_seconds: expected a duration from 0",
                     fleet=_fleet(faults=[{"vm": "a", "error": "slow", "delay_seconds": -3}])), id="fleet-fault-delay-negative"),
    pytest.param(Row("faults[0].retry_after: expected a whole number",
                     fleet=_fleet(faults=[{"vm": "a", "error": "429", "retry_after": "soon"}])), id="fleet-retry-after-text"),
    pytest.param(Row("update_domains: expected a whole number from 1 to 20", fleet={"subscriptions": [{"id": SUB,
                     "resource_groups": [{"name": "rg", "availability_sets": [{"name": "as", "update_domains": "x"}]}]}]}),
                 id="fleet-update-domains-text"),
    pytest.param(Row("self_service_window[1]: expected a finite duration of at most 10 years", fleet=_vms(maintenance={
        "allowed": True, "self_service_window": ["-1d", "9" * 30 + "d"]})), id="fleet-window-overflows"),
]


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimHandle]:
    """One simulator for the whole table: every row is refused, so none changes it (checked)."""
    sim = Simulator(BASIC, time_scale=10).start()
    try:
        yield SimHandle(sim)
    finally:
        sim.stop()


def _arm(stats: dict[str, Any]) -> int:
    return int(stats["requests"] - stats["by_operation"].get("identity.token", 0))


@pytest.mark.parametrize("row", INPUTS)
def test_malformed_input_is_refused_cleanly(row: Row, shared_sim: SimHandle, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = str(tmp_path)
    if row.fleet is not None:
        with pytest.raises(FleetError) as err:
            load_fleet(row.fleet)
        assert row.fragment in str(err.value)
        return
    for name, content in row.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
    for k, v in shared_sim.env.items():
        monkeypatch.setenv(k, v)
    for k, v in row.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    before = shared_sim.stats()
    r = runner.invoke(app, [a.replace("{tmp}", tmp) for a in row.argv], input=row.stdin)
    after = shared_sim.stats()
    assert after["writes"] - before["writes"] == 0
    assert r.exit_code == 2, r.output
    assert row.fragment.replace("{tmp}", tmp) in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output and "internal error" not in r.output
    if row.upfront:
        assert _arm(after) == _arm(before), "refused only after sending requests"


# ----------------------------------------------------------------------------- preflight
def test_check_query() -> None:
    from vmctl.preflight import check_query

    check_query(None)
    check_query("[?powerState=='stopped'].id")
    for bad, fragment in (("[?", "--query '[?' is not a valid JMESPath expression"), ("", "--query is empty"),
                          ("foo[", "is not a valid JMESPath"), ("a.b.", "is not a valid JMESPath")):
        with pytest.raises(InputError, match=None) as err:
            check_query(bad)
        assert fragment in err.value.message and "\n" not in err.value.message


def test_check_writable(tmp_path: Path) -> None:
    from vmctl.preflight import check_writable

    check_writable(None, "--report")
    check_writable(tmp_path / "r.md", "--report")
    (tmp_path / "old.jsonl").write_text("{}\n")
    check_writable(tmp_path / "old.jsonl", "--report")                      # a report may be replaced
    cases = [
        (tmp_path / "old.jsonl", {"must_not_exist": True}, "--journal", "already exists; a journal is never overwritten"),
        (tmp_path, {}, "--report", "is a directory"),
        (tmp_path / "nodir" / "r.md", {}, "--report", "does not exist"),
        (tmp_path / "old.jsonl" / "r.md", {"create_parents": True}, "--journal", "is not a directory"),
    ]
    for path, kw, flag, fragment in cases:
        with pytest.raises(InputError) as err:
            check_writable(path, flag, **kw)
        assert fragment in err.value.message and flag in err.value.message
    check_writable(tmp_path / "new" / "deeper" / "j.jsonl", "--journal", must_not_exist=True, create_parents=True)
    assert not (tmp_path / "new").exists()  # creates nothing


@pytest.mark.skipif(ROOT, reason="root may write anywhere")
def test_check_writable_refuses_read_only_directories(tmp_path: Path) -> None:
    from vmctl.preflight import check_writable

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="is not writable"):
            check_writable(ro / "r.md", "--report")
    finally:
        ro.chmod(0o700)


def test_check_bundle_dir(tmp_path: Path) -> None:
    from vmctl.preflight import check_bundle_dir

    check_bundle_dir(None)
    check_bundle_dir(tmp_path / "new" / "bundle")        # created later, parents too
    (tmp_path / "empty").mkdir()
    check_bundle_dir(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    for path, fragment in ((tmp_path / "full", "is not empty"), (tmp_path / "file", "is not a directory"),
                           (tmp_path / "file" / "b", "is not a directory")):
        with pytest.raises(InputError) as err:
            check_bundle_dir(path)
        assert fragment in err.value.message and "--bundle" in err.value.message


def test_check_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.preflight import check_hook

    monkeypatch.chdir(tmp_path)
    drain = tmp_path / "drain.sh"
    drain.write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "dir").mkdir()
    cases = [
        ("./drain.sh --fast", "--pre-hook './drain.sh --fast': ./drain.sh is not executable (chmod +x ./drain.sh)"),
        ("./missing.sh", "--pre-hook './missing.sh': ./missing.sh does not exist"),
        ("./dir", "./dir is a directory"),
        ("no-such-command-xyz arg", "no-such-command-xyz is not a command on PATH"),
        ("   ", "--pre-hook is empty"),
        ("./drain.sh 'unclosed", "is not a valid shell command"),
        ("MODE=fast ./missing.sh", "./missing.sh does not exist"),
    ]
    for command, fragment in cases:
        with pytest.raises(InputError) as err:
            check_hook(command, "--pre-hook")
        assert fragment in err.value.message
    drain.chmod(0o755)
    for ok in (None, "./drain.sh --fast", f"{drain} x", "sh ./whatever.sh", "MODE=fast ./drain.sh", "true",
               "exit 0", "$HOME/bin/check", "(cd /tmp && ls)", "if true; then :; fi"):
        check_hook(ok, "--pre-hook")


def test_check_hook_env() -> None:
    from vmctl.preflight import check_hook_env

    assert check_hook_env(["HTTPS_PROXY", "APP_TOKEN_FILE", "HTTPS_PROXY"]) == ("HTTPS_PROXY", "APP_TOKEN_FILE")
    for bad, fragment in (("TOKEN=abc", "gives a value; --hook-env takes a name"), ("1ABC", "is not an environment"),
                          ("APP_*", "is not an environment"), ("", "is not an environment")):
        with pytest.raises(InputError) as err:
            check_hook_env([bad])
        assert fragment in err.value.message
        assert "abc" not in err.value.message  # a value is never echoed back


# ----------------------------------------------------------------------------- timefmt
def test_durations_are_finite_and_bounded() -> None:
    from vmctl.timefmt import MAX_HOOK_TIMEOUT, parse_duration, parse_seconds

    assert parse_duration("7d", "--pause") == 7 * 86400
    assert parse_duration("0", "--pause") == 0 and parse_duration("90m", "--pause") == 5400
    assert parse_duration("2h", "--wait", maximum=7200) == 7200
    for text, fragment in (("8d", "longer than 7 days"), ("9" * 400, "longer than 7 days"), ("nan", "is not a duration"),
                           ("inf", "is not a duration"), ("-5m", "is not a duration")):
        with pytest.raises(InputError) as err:
            parse_duration(text, "--pause")
        assert fragment in err.value.message and err.value.message.startswith("--pause '")
        assert len(err.value.message) < 120
    assert parse_seconds(300, "--timeout") == 300.0
    assert parse_seconds(86400, "--hook-timeout", maximum=MAX_HOOK_TIMEOUT) == 86400.0
    for value, kw, fragment in (
            (math.nan, {}, "--timeout 'nan' is not a number of seconds"),
            (math.inf, {}, "--timeout 'inf' is not a number of seconds"),
            (-math.inf, {}, "is not a number of seconds"),
            (0.0, {}, "--timeout must be more than 0 seconds"), (-3.0, {}, "must be more than 0 seconds"),
            (1e12, {}, "more than 604800 seconds (7 days)"),
            (86401.0, {"maximum": MAX_HOOK_TIMEOUT}, "more than 86400 seconds (1 day)"),
            (1.0, {"minimum_exclusive": 1.0}, "must be more than 1 seconds")):
        with pytest.raises(InputError) as err:
            parse_seconds(value, "--timeout", **kw)
        assert fragment in err.value.message


# ----------------------------------------------------------------------------- journal files
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_journal_and_state_directory_are_private(tmp_path: Path) -> None:
    from vmctl import journal as jr

    state = jr.state_dir()
    state.parent.mkdir(parents=True)
    state.parent.chmod(0o755)                                   # made by an older vmctl: tightened
    j = jr.Journal(jr.default_path("20260101T000000Z-abcdef"))
    j.write("run", runId="x")
    j.close()
    assert _mode(j.path) == 0o600
    assert _mode(state) == 0o700 and _mode(state.parent) == 0o700
    own = tmp_path / "mine" / "sub" / "j.jsonl"                 # a --journal path: new directories are private
    jr.Journal(own).close()
    assert _mode(own) == 0o600 and _mode(own.parent) == 0o700 and _mode(own.parent.parent) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    jr.Journal(shared / "j.jsonl").close()
    assert _mode(shared) == 0o755                               # a directory the user named is left alone


def test_journal_is_never_overwritten_and_errors_name_the_path(tmp_path: Path) -> None:
    from vmctl import journal as jr

    old = tmp_path / "old.jsonl"
    old.write_text("keep\n")
    with pytest.raises(InputError) as err:
        jr.Journal(old)
    assert err.value.message == f"--journal {old} already exists; a journal is never overwritten: give a new path."
    assert old.read_text() == "keep\n"
    with pytest.raises(InputError, match="is a directory"):
        jr.Journal(tmp_path, append=True)
    with pytest.raises(InputError) as err:
        jr.Journal(old / "j.jsonl")                             # its directory is a file
    assert str(old) in err.value.message
    j = jr.Journal(old, append=True)                            # resume and evidence append
    j.write("x")
    j.close()
    assert old.read_text().startswith("keep\n{")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs")
def test_unwritable_journal_directory_is_an_input_error_even_for_root() -> None:
    from vmctl import journal as jr

    with pytest.raises(InputError) as err:                      # sysfs refuses new files, root included
        jr.Journal(Path("/sys/kernel/vmctl-run.jsonl"))
    assert err.value.message.startswith("cannot write journal /sys/kernel/vmctl-run.jsonl: ")


@pytest.mark.skipif(ROOT, reason="root may write anywhere")
def test_read_only_journal_is_an_input_error(tmp_path: Path) -> None:
    from vmctl import journal as jr

    j = tmp_path / "j.jsonl"
    j.write_text("{}\n")
    j.chmod(0o400)
    with pytest.raises(InputError, match=f"cannot write journal {j}: Permission denied"):
        jr.Journal(j, append=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="Permission denied"):
            jr.Journal(ro / "j.jsonl")
    finally:
        ro.chmod(0o700)


def test_write_private(tmp_path: Path) -> None:
    from vmctl.journal import write_private

    report = tmp_path / "r.md"
    report.write_text("old")
    report.chmod(0o644)
    write_private(report, "# new\n", flag="--report")
    assert report.read_text() == "# new\n" and _mode(report) == 0o600
    write_private(tmp_path / "b.bin", b"\x00\x01", exclusive=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01" and _mode(tmp_path / "b.bin") == 0o600
    with pytest.raises(InputError, match="already exists; it is never overwritten"):
        write_private(tmp_path / "b.bin", "x", flag="--bundle", exclusive=True)
    with pytest.raises(InputError) as err:
        write_private(tmp_path / "nodir" / "r.md", "x", flag="--report")
    assert err.value.message.startswith(f"cannot write --report {tmp_path / 'nodir' / 'r.md'}: No such file")
    (tmp_path / "adir").mkdir()
    with pytest.raises(InputError, match="Is a directory"):
        write_private(tmp_path / "adir", "x", flag="--report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "b.bin", "r.md"]  # no temporary file left


def test_journal_read_tolerates_a_cut_last_line_but_not_a_foreign_file(tmp_path: Path) -> None:
    from vmctl import journal as jr

    j = tmp_path / "j.jsonl"
    j.write_bytes(valid_journal() + b'{"type": "outc\xc3')       # cut mid-record, mid-character, by a crash
    records = jr.read(j)
    assert [r["type"] for r in records] == ["run", "plan", "end", "corrupt"]
    j.write_bytes(b"x" * (jr.FIRST_LINE_MAX + 10))              # a big file that is not a journal: not read whole
    with pytest.raises(InputError, match="is not a vmctl journal"):
        jr.read(j)


# ----------------------------------------------------------------------------- config details
def test_config_rules_and_booleans() -> None:
    cfg = parse_config({"production": {"default_rule": False, "rules": [{"resource_groups": ["rg-live"]}]}})
    assert len(cfg.production_rules) == 1
    assert parse_config({"selection": {"tag_values_case_sensitive": False}}).tag_values_case_sensitive is False
    for data, fragment in (
            ({"production": {"rules": [{"tags": [], "values": ["prod"]}]}}, "'values' needs 'tags'"),
            ({"production": {"rules": [{"subscriptions": []}]}}, "has no condition, so it would protect no VM"),
            ({"production": {"default_rule": 0}}, "production.default_rule must be true or false"),
            ({"safety": {"max_percent": math.nan}}, "safety.max_percent must be a positive number of at most 100"),
            ({"execution": {"parallel": 1.5}}, "execution.parallel must be a positive whole number"),
            ({"cloud": ["AzureCloud"]}, "cloud must be a string")):
        with pytest.raises(ConfigError) as err:
            parse_config(data)
        assert fragment in err.value.message


def test_pace_scale_from_the_environment() -> None:
    from vmctl.config import pace_scale

    cfg = parse_config({"execution": {"pace_scale": 2.0}})
    assert pace_scale(cfg, {}) == 2.0 and pace_scale(cfg, {"VMCTL_PACE_SCALE": "10"}) == 10.0
    for bad in ("nan", "0", "-1", "inf", "fast", "1e9"):
        with pytest.raises(ConfigError, match="VMCTL_PACE_SCALE"):
            pace_scale(cfg, {"VMCTL_PACE_SCALE": bad})


def test_config_not_utf8_names_the_file(tmp_path: Path) -> None:
    c = tmp_path / "c.toml"
    c.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(c))
    assert str(c) in err.value.message and "UTF-8" in err.value.message
