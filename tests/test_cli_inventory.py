"""`vmctl list` and `vmctl show` end to end: CLI -> real SDK -> simulator."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import BASIC, SUB_A, SUB_B, SimHandle
from vmctl.cli import app

runner = CliRunner()
ID = f"/subscriptions/{SUB_A}/resourceGroups/rg-misc/providers/Microsoft.Compute/virtualMachines/stopped-01"


def vmctl(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def arm_requests(sim: SimHandle) -> int:
    s = sim.stats()
    return int(s["requests"] - s["by_operation"].get("identity.token", 0))


def test_list_table_marks_production_and_stopped_but_billed(sim: SimHandle) -> None:
    r = vmctl("list", "--show-tags", "app")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["SUBSCRIPTION", "GROUP", "NAME", "LOCATION"] and "TAG:app" in lines[0]
    stopped = next(line for line in lines if " stopped-01 " in line)
    assert "stopped (still billed)" in stopped and "PROD" in stopped
    dealloc = next(line for line in lines if " dealloc-01 " in line)
    assert "deallocated" in dealloc and "zone 2" in dealloc and "PROD" in dealloc
    app01 = next(line for line in lines if " app-01 " in line)
    # Azure's status listing (sparse): the fault domain, no update domain, no maintenance
    assert "as-app FD0" in app01 and " ? " in app01 and " web " in app01
    assert "MAINTENANCE ?: Azure's status listing did not carry it for 14 VMs" in r.stdout
    assert "ephemeral-os" in next(line for line in lines if " eph-01 " in line)
    assert "hibernation,spot" in next(line for line in lines if " hib-01 " in line)
    assert "vmss" in next(line for line in lines if " node-0 " in line)
    assert "\x1b[" not in r.stdout  # no colour when not a TTY
    assert "14 VMs:" in r.stdout and "2 production" in r.stdout
    assert "1 stopped but still billed" in r.stdout


def test_list_uses_what_a_richer_status_listing_carries(make_sim: Any) -> None:
    """Where the status listing carries the instance view in full (as some API versions may), the
    list shows update domains and maintenance without a request per VM."""
    import yaml

    fleet = yaml.safe_load(BASIC.read_text())
    fleet["platform"] = {"status_only_items": "full", "maintenance_in_status_list": True}
    sim = make_sim(fleet)
    sim.reset("stats")
    r = vmctl("list", "--show-tags", "app")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    app01 = next(line for line in lines if " app-01 " in line)
    assert "as-app UD0/FD0" in app01 and "can start now" in app01
    assert "self-service closed" in next(line for line in lines if " closed-01 " in line)
    assert "MAINTENANCE ?" not in r.stdout
    assert "virtualMachines.instanceView" not in sim.stats()["by_operation"]


def test_list_order_is_deterministic(sim: SimHandle) -> None:
    data = json.loads(vmctl("list", "-s", SUB_B, "-s", SUB_A, "-o", "json").stdout)["data"]
    keys = [(d["subscriptionName"], d["resourceGroup"].lower(), d["name"].lower()) for d in data]
    assert keys == sorted(keys) and len(keys) == 17
    assert json.loads(vmctl("list", "-s", SUB_A, "-s", SUB_B, "-o", "json").stdout)["data"] == data


def test_inventory_costs_pages_not_vms(sim: SimHandle) -> None:
    """14 VMs at page size 5 = 3 pages of the full listing and 3 of the status listing, plus one
    subscription GET: at most 2 x pages + 1. Never one request per VM."""
    sim.reset("stats")
    assert vmctl("list", "-o", "json").exit_code == 0
    s = sim.stats()
    assert s["by_operation"]["virtualMachines.listAll"] == 2 * 3
    assert arm_requests(sim) == 2 * 3 + 1
    assert s["writes"] == 0
    assert "virtualMachines.instanceView" not in s["by_operation"]


@pytest.mark.parametrize("args,expected", [
    (["--tag", "env=dev", "-g", "rg-misc"], ["broken-01", "eph-01", "node-0"]),
    (["--tag", "ENV=prod"], ["dealloc-01"]),
    (["--tag", "environment"], ["stopped-01"]),
    (["--exclude-tag", "env", "-g", "rg-misc"], ["stopped-01"]),
    (["-n", "app-0[12]", "-n", "hib-*"], ["app-01", "app-02", "hib-01"]),
    (["--power-state", "stopped", "--power-state", "deallocated"], ["dealloc-01", "stopped-01"]),
    (["--location", "West Europe", "-g", "RG-MISC", "--tag", "!env"], ["stopped-01"]),
    (["--ids", ID], ["stopped-01"]),
])
def test_selection_on_the_command_line(sim: SimHandle, args: list[str], expected: list[str]) -> None:
    r = vmctl("list", *args, "-o", "json", "--query", "[].name")
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(r.stdout)) == expected


def test_ids_from_stdin_and_file(sim: SimHandle, tmp_path: Any) -> None:
    other = ID.replace("stopped-01", "eph-01")
    r = vmctl("list", "--ids", "-", "--query", "[].name", input=f"{ID}\n{other}\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["eph-01", "stopped-01"]  # scalar query results print one per line
    f = tmp_path / "ids.txt"
    f.write_text(f"# from az vm list -o tsv\n{other}\n")
    assert vmctl("list", "--ids", f"@{f}", "-o", "json", "--query", "[].name").stdout.split() == ['[', '"eph-01"', ']']


def test_csv_and_markdown(sim: SimHandle) -> None:
    r = vmctl("list", "-o", "csv", "--show-tags", "env")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0][:3] == ["SUBSCRIPTION", "GROUP", "NAME"] and rows[0][-1] == "TAG:env"
    assert len(rows) == 15
    md = vmctl("list", "-o", "markdown", "-n", "stopped-01").stdout
    assert md.splitlines()[0].startswith("| SUBSCRIPTION | GROUP | NAME |")
    assert "| stopped (still billed) |" in md and "**1 VMs:" in md


def test_output_from_env_and_config(sim: SimHandle, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMCTL_OUTPUT", "csv")
    assert vmctl("list", "-n", "eph-01").stdout.startswith("SUBSCRIPTION,")
    monkeypatch.delenv("VMCTL_OUTPUT")
    cfg = tmp_path / "c.toml"
    cfg.write_text('output = "markdown"\n[[production.rules]]\nresource_groups = ["rg-misc"]\n')
    r = vmctl("list", "--config", str(cfg), "-n", "eph-01")
    assert r.stdout.startswith("| SUBSCRIPTION") and "| PROD |" in r.stdout


def test_show_explains_maintenance_and_json_has_raw_view(sim: SimHandle) -> None:
    r = vmctl("show", "-g", "rg-app", "app-01", "closed-01")
    assert r.exit_code == 0, r.output
    assert "Maintenance can be started now" in r.stdout
    assert "open now, closes in 6 days" in r.stdout
    assert "self-service window is not open now" in r.stdout and "closed 1 day ago" in r.stdout
    assert "update domain 0, fault domain 0" in r.stdout
    assert "PowerState/running" in r.stdout
    j = json.loads(vmctl("show", ID, "-o", "json").stdout)
    assert j["kind"] == "vm-show"
    view = j["data"][0]["instanceView"]
    assert [s["code"] for s in view["statuses"]][1] == "PowerState/stopped"
    assert j["data"][0]["vm"]["stoppedButBilled"] is True and j["data"][0]["vm"]["production"] is True


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("args,message", [
    (["list", "--tag", "env==prod"], "--tag 'env==prod': unexpected '=' at position 5"),
    (["list", "--ids", "/subscriptions/nope"], "is not a virtual machine resource ID"),
    (["list", "--ids", ID, "-g", "rg"], "--ids cannot be combined with --resource-group"),
    (["list", "-o", "yaml"], "--output 'yaml' is not a format"),
    (["list", "--power-state", "sleeping"], "is not a power state"),
    (["list", "--cloud", "Mars"], "--cloud 'Mars' is not a known cloud"),
    (["list", "--arm-endpoint", "http://127.0.0.1:1"], "must be an https:// URL"),
    (["list", "--query", "[?"], "is not a valid JMESPath expression"),
    (["show", "app-01"], "without --resource-group"),
    (["list", "--config", "/nonexistent/vmctl.toml"], "does not exist"),
])
def test_bad_input_is_refused_before_any_request(sim: SimHandle, args: list[str], message: str) -> None:
    sim.reset("stats")
    r = vmctl(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    if "--query" not in args:
        assert sim.stats()["requests"] == 0


@pytest.mark.parametrize("args,message", [
    (["list", "-s", "00000000-0000-0000-0000-0000000000ff"], "Subscription 00000000-0000-0000-0000-0000000000ff was not found"),
    (["list", "-s", "not-a-guid"], "subscription 'not-a-guid' is not the name or ID of any subscription"),
    (["list", "-g", "rg-nope"], "Resource group 'rg-nope' was not found"),
    (["list", "--ids", ID.replace("stopped-01", "ghost")], "VM rg-misc/ghost was not found"),
    (["show", "-g", "rg-app", "ghost"], "The Resource 'Microsoft.Compute/virtualMachines/ghost'"),
    (["show", "-g", "rg-nope", "x"], "Resource group 'rg-nope' could not be found"),
])
def test_unknown_names_exit_2(sim: SimHandle, args: list[str], message: str) -> None:
    r = vmctl(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output


def test_empty_group_is_not_unknown(sim: SimHandle) -> None:
    r = vmctl("list", "-g", "rg-app", "--tag", "env=nothing")
    assert r.exit_code == 0 and "0 VMs" in r.stdout


def test_denied_and_expired_token_and_no_credential(sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.faults({"operation": "listAll", "error": "403", "times": 1})
    r = vmctl("list")
    assert r.exit_code == 1 and "Access denied while listing VM" in r.stderr and "Virtual Machine Contributor" in r.stderr
    sim.faults({"operation": "listAll", "error": "401", "times": 1})
    r = vmctl("list")
    assert r.exit_code == 1 and "expired token" in r.stderr and "az login" in r.stderr
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    r = vmctl("list")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: No Azure credential") and "az login" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 2 and "Traceback" not in r.output


def test_wrong_identity_header_is_a_credential_error(sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    r = vmctl("list")
    assert r.exit_code == 1 and "No Azure credential worked; tried ManagedIdentityCredential" in r.stderr


def test_unreachable_and_untrusted_endpoints(make_sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_sim()
    second = make_sim()  # its CA is not in REQUESTS_CA_BUNDLE once we point back at the first
    for k, v in first.env.items():
        monkeypatch.setenv(k, v)
    # both at once: each spends ~5 s in the SDK's connection retries (with backoff) before failing
    procs = [subprocess.Popen([sys.executable, "-m", "vmctl", "list", "--arm-endpoint", url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for url in (second.url, "https://127.0.0.1:9")]
    (out1, err1), (out2, err2) = (p.communicate(timeout=60) for p in procs)
    assert procs[0].returncode == 1 and "is not trusted" in err1 and "REQUESTS_CA_BUNDLE" in err1
    assert procs[1].returncode == 1 and "Cannot reach https://127.0.0.1:9" in err2


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["show", "--help"], ["sim", "serve", "--help"]])
def test_help_never_imports_azure_and_has_an_example(argv: list[str]) -> None:
    code = ("import sys; from vmctl.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.'))\n"
            "print('AZURE:' + ','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert "AZURE:\n" in out.stdout or out.stdout.rstrip().endswith("AZURE:"), out.stdout[-500:]
    if argv != ["--help"]:
        assert "Example" in out.stdout


def test_per_vm_reads_only_for_vms_whose_status_is_missing(make_sim: Any) -> None:
    import yaml

    fleet = yaml.safe_load(BASIC.read_text())
    vms = fleet["subscriptions"][0]["resource_groups"][1]["vms"]
    for v in vms:
        if v["name"] in ("eph-01", "stopped-01"):
            v["status_in_list"] = False
    sim = make_sim(fleet)
    sim.reset("stats")
    doc = json.loads(vmctl("list", "-o", "json").stdout)
    states = {d["name"]: d["powerState"] for d in doc["data"]}
    assert states["stopped-01"] == "stopped" and states["eph-01"] == "running"
    stats = sim.stats()["by_operation"]
    assert stats["virtualMachines.instanceView"] == 2 and stats["virtualMachines.listAll"] == 2 * 3


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_reader_that_leaves_early_is_not_a_failure(make_sim: Any, fmt: str) -> None:
    """`vmctl list | head -1`: exit 0 and no traceback when the pipe closes (output well over a pipe buffer)."""
    make_sim({"subscriptions": [{"id": SUB_A, "resource_groups": [
        {"name": "rg-many", "vms": [{"name": "vm-{i:04d}", "count": 800, "tags": {"env": "dev"}}]}]}]})
    run = subprocess.run(["bash", "-c", f'"{sys.executable}" -m vmctl list -o {fmt} | head -1 >/dev/null; '
                                        'echo "rc=${PIPESTATUS[0]}"'],
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "rc=0", run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
