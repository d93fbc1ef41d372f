"""The examples operators copy: the hooks and the GitHub Actions workflow, run for real against the
simulator (the workflow's shell steps with the workflow's own flags; `uses:` steps stand for what
GitHub provides: the sign-in is the simulator's managed identity, artifacts are one directory)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from conftest import SimHandle

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEMO = EXAMPLES / "fleet.yaml"
DEV = "00000000-0000-0000-0000-000000000001"
BIN = str(Path(sys.executable).parent)
EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _shell(script: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # GitHub's `shell: bash` is `bash --noprofile --norc -eo pipefail {0}`
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the workflow
WORKFLOW = EXAMPLES / "github-actions" / "vmctl-plan.yml"
VALUES = {"vars.AZURE_SUBSCRIPTION_ID": DEV, "vars.VMCTL_PIP_SPEC": "vmctl", "inputs.ticket": "CHG-4242",
          "vars.AZURE_CLIENT_ID": "client", "vars.AZURE_TENANT_ID": "tenant"}


def _workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_the_workflow_is_shaped_for_oidc_a_gate_and_an_approval() -> None:
    doc = _workflow()
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "workflow_dispatch" in on
    plan, apply = doc["jobs"]["plan"], doc["jobs"]["apply"]
    for job in (plan, apply):
        assert job["permissions"]["id-token"] == "write"  # OIDC: no secret anywhere
        login = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
        assert login and "client-secret" not in login[0]["with"] and "creds" not in login[0]["with"]
        for step in job["steps"]:
            # expressions only in `env:`/`with:`: a `${{ }}` inside a script is a script-injection risk
            assert "${{" not in step.get("run", ""), step
    assert apply["needs"] == "plan" and apply["environment"] == "vmctl-apply"
    assert any("upload-artifact" in str(s.get("uses", "")) and s["with"]["path"] == "plan.json" for s in plan["steps"])
    assert any("download-artifact" in str(s.get("uses", "")) for s in apply["steps"])


def test_the_workflow_runs_against_the_simulator(make_sim: Callable[..., SimHandle], tmp_path: Path) -> None:
    sim = make_sim(DEMO, time_scale=200)
    doc = _workflow()
    summary = tmp_path / "summary.md"
    env = {**os.environ, **sim.env, "PATH": BIN + os.pathsep + os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary)}
    for key, value in (doc.get("env") or {}).items():
        env[key] = EXPR.sub(lambda m: VALUES[m.group(1)], str(value))
    work = tmp_path / "workspace"  # both jobs' workspace: the plan artifact travels by being there
    work.mkdir()
    ran = []
    for name in ("plan", "apply"):
        failed = False
        for step in doc["jobs"][name]["steps"]:
            if "run" not in step or step.get("name") == "Install vmctl":  # the test venv is vmctl installed
                continue
            if failed and "always()" not in str(step.get("if", "")):
                continue
            r = _shell(step["run"], work, env)
            ran.append((name, step.get("name"), r.returncode))
            assert r.returncode == 0, (step.get("name"), r.stdout, r.stderr)
    assert [n for n, _, _ in ran] == ["plan", "apply", "apply"]
    plan = json.loads((work / "plan.json").read_text())
    acting = [s for s in plan["steps"] if s["action"]]
    assert acting and plan["options"]["ticket"] == "CHG-4242"
    text = summary.read_text()
    assert f"Plan {plan['runId']}" in text and "CHG-4242" in text  # the plan, then the run's report
    assert (work / "report.md").is_file() and (work / "evidence" / "SHA256SUMS").is_file()
    r = subprocess.run([f"{BIN}/vmctl", "list", "--tag", "env=dev", "-o", "json"], env=env, capture_output=True,
                       text=True, timeout=60)
    states = {vm["name"]: vm["powerState"] for vm in json.loads(r.stdout)["data"]}
    assert all(states[s["vm"]["name"]] == "deallocated" for s in acting), states


# ------------------------------------------------------------------ the hooks
class _App(http.server.BaseHTTPRequestHandler):
    """A VM's drain and health endpoints: POST starts draining, GET says drained; /healthz is 200."""

    calls: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.calls.append(("POST", self.path))
        self._answer(202, b"draining")

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", self.path))
        if self.path.endswith("/healthz"):
            self._answer(200, b"healthy")
        else:
            self._answer(200, b"draining" if "/never" in self.path else b"drained")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def app_server() -> Iterator[str]:
    _App.calls = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_drain_and_healthcheck_hooks_run_through_vmctl(make_sim: Callable[..., SimHandle], tmp_path: Path,
                                                       app_server: str) -> None:
    sim = make_sim(DEMO, time_scale=200)
    env = {**os.environ, **sim.env, "PATH": BIN + os.pathsep + os.environ["PATH"],
           "DRAIN_URL_TEMPLATE": app_server + "/{group}/{name}/drain",
           "HEALTH_URL_TEMPLATE": app_server + "/{group}/{name}/healthz"}
    r = _shell("vmctl restart -g rg-legacy -n 'legacy-0[12]' --pre-hook ./examples/drain.sh "
               "--post-hook ./examples/healthcheck.sh --hook-env DRAIN_URL_TEMPLATE --hook-env HEALTH_URL_TEMPLATE "
               "--yes --no-evidence-wait -o json", ROOT, env)
    assert r.returncode == 0, r.stderr
    outcomes = {v["name"]: v["outcome"] for v in json.loads(r.stdout)["data"]["vms"]}
    assert outcomes == {"legacy-01": "succeeded", "legacy-02": "succeeded"}
    calls = set(_App.calls)
    for vm in ("legacy-01", "legacy-02"):
        assert ("POST", f"/rg-legacy/{vm}/drain") in calls and ("GET", f"/rg-legacy/{vm}/drain") in calls
        assert ("GET", f"/rg-legacy/{vm}/healthz") in calls


def test_the_sample_hooks_without_endpoints_say_so_and_succeed(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "VMCTL_VM_NAME": "web-01", "VMCTL_RESOURCE_GROUP": "rg-web",
           "VMCTL_ACTION": "deallocate"}
    for hook, said in (("drain.sh", "nothing to drain"), ("healthcheck.sh", "nothing more checked")):
        r = _shell(str(EXAMPLES / hook), tmp_path, env)
        assert r.returncode == 0 and said in r.stdout, (hook, r.stdout, r.stderr)
    r = _shell(str(EXAMPLES / "drain.sh"), tmp_path, {"PATH": os.environ["PATH"]})
    assert r.returncode != 0 and "VMCTL_VM_NAME" in r.stderr  # not run by vmctl: refused, not a silent pass


def test_a_drain_that_never_completes_fails_the_hook(tmp_path: Path, app_server: str) -> None:
    env = {"PATH": os.environ["PATH"], "VMCTL_VM_NAME": "web-01", "VMCTL_RESOURCE_GROUP": "rg-web",
           "DRAIN_URL_TEMPLATE": app_server + "/{name}/never", "DRAIN_TIMEOUT": "0"}
    _App.calls = []
    r = _shell(str(EXAMPLES / "drain.sh"), tmp_path, env)
    assert r.returncode == 1 and "not drained" in r.stderr, (r.stdout, r.stderr)


# ------------------------------------------------------------------ the off-hours schedule
SCHEDULE = EXAMPLES / "schedule"


def test_the_offhours_schedule_deallocates_then_starts_and_keeps_each_run(make_sim: Callable[..., SimHandle],
                                                                          tmp_path: Path) -> None:
    """The scheduled workflow's own step, for each of its crons, against the simulator: evening
    deallocates the dev VMs, morning starts them (health-checked); a journal and a report each."""
    sim = make_sim(DEMO, time_scale=200)
    doc = yaml.safe_load((SCHEDULE / "vmctl-offhours.yml").read_text(encoding="utf-8"))
    on = doc.get("on", doc.get(True))
    crons = [c["cron"] for c in on["schedule"]]
    assert len(crons) == 2
    # the crontab runs the same times as the workflow
    tab = [line.split() for line in (SCHEDULE / "crontab").read_text().splitlines()
           if line.strip() and not line.startswith(("#", "PATH="))]
    assert sorted(" ".join(f[:5]) for f in tab) == sorted(crons)
    assert {f[-1] for f in tab} == {"deallocate", "start"}
    step = next(s for s in doc["jobs"]["offhours"]["steps"] if s.get("name") == "Deallocate or start")
    runs = tmp_path / "runs"
    env = {**os.environ, **sim.env, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    for key, value in doc["env"].items():
        env[key] = EXPR.sub(lambda m: {"github.event.schedule": "", "inputs.verb": ""}.get(m.group(1), VALUES.get(
            m.group(1), "")), str(value))
    env["VMCTL_RUNS_DIR"] = str(runs)
    env["VMCTL_SELECTION"] = "-g rg-legacy -n legacy-0[12]"
    states = []
    for cron in crons:
        r = _shell(step["run"], ROOT, {**env, "SCHEDULE": cron})
        assert r.returncode == 0, (cron, r.stdout, r.stderr)
        out = subprocess.run([f"{BIN}/vmctl", "list", "-g", "rg-legacy", "-o", "json"], env=env, capture_output=True,
                             text=True, timeout=60)
        states.append({vm["name"]: vm["powerState"] for vm in json.loads(out.stdout)["data"]})
    assert states[0]["legacy-01"] == "deallocated" and states[1]["legacy-01"] == "running"
    journals, reports = sorted(runs.glob("*.jsonl")), sorted(runs.glob("*.md"))
    assert [p.name.split("-", 1)[1] for p in journals] == ["deallocate.jsonl", "start.jsonl"]
    assert len(reports) == 2 and "offhours-start" in reports[1].read_text()
    assert oct(runs.stat().st_mode & 0o777) == "0o700"
    # a failed VM fails the schedule (cron mails, CI marks it): legacy-03's start fails in the demo fleet
    r = _shell(f"{SCHEDULE / 'offhours.sh'} start", ROOT, {**env, "VMCTL_SELECTION": "-g rg-legacy -n legacy-03",
                                                           "VMCTL_RUNS_DIR": str(tmp_path / "failed")})
    assert r.returncode == 1, (r.stdout, r.stderr)  # exit 1: the only VM failed


def test_offhours_refuses_an_unknown_verb(tmp_path: Path) -> None:
    r = _shell(f"{SCHEDULE / 'offhours.sh'} stop", tmp_path, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert r.returncode == 2 and "not deallocate or start" in r.stderr
