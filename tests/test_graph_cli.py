"""vmctl reading the fleet through Azure Resource Graph (`--source graph`), end to end: CLI ->
real azure-mgmt-resourcegraph and azure-mgmt-compute clients -> simulator. Paging, quota pacing,
coverage (an unreadable subscription named), the ARM re-check of a plan before any write, guards
identical to the ARM source, and the flags' validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from azure.mgmt.resourcegraph.models import QueryRequest
from typer.testing import CliRunner

from conftest import SimHandle
from test_graph_sim import SUBS, client, graph_fleet
from vmctl.cli import app
from vmctl.cloud import GraphPage, GraphRow
from vmctl.config import Config, parse_config
from vmctl.models import Options, Vm
from vmctl.selection import build_selector
from vmctl.sources import QUERY, GraphPacer, Scope, choose_source, load_graph_inventory, plan_from_graph

from fakes import FakeFleet, make_vm

Make = Callable[..., SimHandle]
runner = CliRunner()


def vmctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def subs_args(*subs: str) -> list[str]:
    return [a for s in subs for a in ("-s", s)]


def fleet(counts: list[int], **kw: Any) -> dict[str, Any]:
    f = graph_fleet(counts, **{k: v for k, v in kw.items() if k != "readable"}, readable=kw.get("readable"))
    f["paging"] = {"vms": 200}
    return f


def summary(r: Any) -> dict[str, Any]:
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    return doc["summary"]  # type: ignore[no-any-return]


def graph_queries(sim: SimHandle) -> int:
    return int(sim.stats()["by_operation"].get("resourceGraph.resources", 0))


# --------------------------------------------------------------------------- inventory
def test_list_pages_over_1000_rows_in_one_query_per_page(make_sim: Make) -> None:
    sim = make_sim(fleet([1200, 1300]))
    s = summary(vmctl("list", "--source", "graph", *subs_args(*SUBS[:2]), "-o", "json"))
    assert s["total"] == 2500 and s["source"] == "graph"
    assert s["coverage"]["withVms"] == SUBS[:2] and s["coverage"]["queries"] == 3 and s["coverage"]["unreadable"] == []
    assert graph_queries(sim) == 3  # ceil(2500 / 1000): one batch, three pages
    assert sim.stats()["by_operation"].get("virtualMachines.listAll", 0) == 0  # no ARM listing for a read


def test_subscriptions_go_in_batches_of_100(make_sim: Make) -> None:
    f = fleet([1])
    f["subscriptions"] = [{"id": f"00000000-0000-0000-0000-{i:012d}", "name": f"many-{i}",
                           "resource_groups": [{"name": "rg", "vms": [{"name": "vm"}]}]} for i in range(1, 121)]
    f.pop("management_groups")
    sim = make_sim(f)
    s = summary(vmctl("list", "--all-subscriptions", "-o", "json"))
    assert s["source"] == "graph" and s["total"] == 120 and len(s["coverage"]["withVms"]) == 120
    assert s["coverage"]["queries"] == 2 == graph_queries(sim)  # 100 + 20 subscriptions, one page each


def test_auto_reads_through_graph_above_three_subscriptions(make_sim: Make) -> None:
    make_sim(fleet([2, 2, 2, 2]))
    assert summary(vmctl("list", *subs_args(*SUBS), "-o", "json"))["source"] == "graph"
    assert summary(vmctl("list", *subs_args(*SUBS[:3]), "-o", "json"))["source"] == "arm"
    everything = summary(vmctl("list", "--all-subscriptions", "-o", "json"))
    assert everything["source"] == "graph" and everything["total"] == 8 and everything["coverage"]["scope"] == "tenant"


def test_quota_pacing_sends_no_query_into_a_429(make_sim: Make) -> None:
    """Two queries per window: vmctl waits for the window to reset instead of meeting a 429."""
    sim = make_sim(fleet([2500, 1600], quota={"queries": 2, "window_seconds": 1}), time_scale=10)
    s = summary(vmctl("list", "--source", "graph", *subs_args(*SUBS[:2]), "-o", "json"))
    assert s["total"] == 4100 and s["coverage"]["queries"] == 5 and s["coverage"]["throttled"] == 0
    assert "429" not in sim.stats()["by_status"]


@pytest.mark.assumption("whether Resource Graph's 429 carries Retry-After is not established; the default sends none")
def test_a_429_from_another_client_on_the_same_quota_is_waited_out(make_sim: Make) -> None:
    # a window of 3 s real: long enough for the three queries below and vmctl's start on a loaded machine
    # (vmctl then waits out what is left of it)
    sim = make_sim(fleet([5], quota={"queries": 3, "window_seconds": 300}), time_scale=100)
    c = client(sim)
    for _ in range(3):  # someone else with the same identity used the window up
        c.resources(QueryRequest(query=QUERY, subscriptions=SUBS[:1]))
    s = summary(vmctl("list", "--source", "graph", *subs_args(SUBS[0]), "-o", "json"))
    assert s["total"] == 5 and s["coverage"]["throttled"] == 1
    assert sim.stats()["by_status"]["429"] == 1


def test_an_unreadable_subscription_is_named_in_table_json_and_dry_run(make_sim: Make) -> None:
    make_sim(fleet([3, 2], readable=[True, False, True, True]))
    args = ["--source", "graph", *subs_args(*SUBS[:2])]
    r = vmctl("list", *args, "-o", "json")
    s = summary(r)
    assert s["coverage"]["asked"] == SUBS[:2] and s["coverage"]["unreadable"] == [SUBS[1]]
    assert s["coverage"]["withVms"] == [SUBS[0]] and s["total"] == 3
    assert "cannot be read by this identity" in r.stderr and SUBS[1] in r.stderr
    table = vmctl("list", *args)
    assert table.exit_code == 0 and "WARNING" in table.stdout and SUBS[1] in table.stdout
    dry = vmctl("deallocate", *args, "--all", "--dry-run", "-o", "json")
    assert dry.exit_code == 4, dry.output  # fail closed: the plan cannot say what it leaves out
    plan = json.loads(dry.stdout)["data"]
    assert plan["coverage"]["unreadable"] == [SUBS[1]] and any(SUBS[1] in r for r in plan["refusals"])


def test_management_group_scope_and_the_tenant_limit_warning(make_sim: Make) -> None:
    make_sim(fleet([2, 3, 4], tenant_subscription_limit=2))
    r = vmctl("list", "--management-group", "mg-root", "-o", "json")
    s = summary(r)
    assert s["source"] == "graph" and s["coverage"]["scope"] == "managementGroup" and s["coverage"]["asked"] is None
    assert s["coverage"]["tenantSubscriptionLimitHit"] is True and s["total"] == 5
    assert "x-ms-tenant-subscription-limit-hit" in r.stderr


# --------------------------------------------------------------------------- acting from Resource Graph
def deallocated_through_arm(sim: SimHandle, rg: str, name: str, sub: str = SUBS[0]) -> None:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    compute = ComputeManagementClient(DefaultAzureCredential(), sub, base_url=sim.url, polling_interval=0.05)
    compute.virtual_machines.begin_deallocate(rg, name).result()


def test_stale_graph_facts_are_rechecked_through_arm_before_any_write(make_sim: Make) -> None:
    """Resource Graph still says running (it lags a minute); ARM says deallocated: the ARM fact
    wins, nothing is sent, and the plan says where each fact came from."""
    sim = make_sim(fleet([3, 2, 2, 2]))
    deallocated_through_arm(sim, "RG-Graph0", "vm0-0001")
    writes = sim.stats()["writes"]
    args = ["deallocate", "--source", "graph", *subs_args(*SUBS), "-n", "vm0-0001", "--yes"]
    dry = vmctl(*args[:-1], "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    (step,) = json.loads(dry.stdout)["data"]["steps"]
    assert step["source"] == "arm" and step["skip"] == "already-in-target-state"
    assert "running in Resource Graph, deallocated in ARM" in step["recheck"]
    table = vmctl(*args[:-1], "--dry-run")
    assert "FACTS" in table.stdout and "ARM re-check" in table.stdout
    sim.reset("stats")
    r = vmctl(*args, "--no-evidence-wait")
    assert r.exit_code == 0, r.output
    stats = sim.stats()
    assert stats["writes"] == 0 and writes == 1  # nothing sent (the one write was the test's own deallocate)
    # re-read through ARM where the draft acted: one subscription's two listings, not the four subscriptions'
    assert stats["by_operation"]["virtualMachines.listAll"] == 2 and stats["by_operation"]["resourceGraph.resources"] == 1


def test_a_plan_from_graph_acts_on_arm_facts_only(make_sim: Make) -> None:
    sim = make_sim(fleet([3, 2, 2, 2]))
    r = vmctl("deallocate", "--source", "graph", *subs_args(*SUBS), "-n", "vm1-*", "--yes", "--no-evidence-wait",
              "-o", "json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)["data"]
    assert [v["outcome"] for v in report["vms"]] == ["succeeded", "succeeded"]
    assert sim.stats()["by_operation"]["virtualMachines.deallocate"] == 2


def test_guards_are_the_arm_sources_production_needs_more_than_yes(make_sim: Make) -> None:
    f = fleet([2, 1, 1, 1])
    f["subscriptions"][0]["resource_groups"][0]["vms"].append({"name": "prod-01", "tags": {"env": "prod"}})
    sim = make_sim(f)
    r = vmctl("deallocate", "--source", "graph", *subs_args(*SUBS), "-g", "RG-Graph0", "--yes", "--no-evidence-wait",
              "-o", "json")
    assert r.exit_code == 0, r.output
    outcomes = {v["name"]: v["outcome"] for v in json.loads(r.stdout)["data"]["vms"]}
    assert outcomes["prod-01"] == "skipped" and outcomes["vm0-0001"] == "succeeded"
    assert sim.stats()["by_operation"]["virtualMachines.deallocate"] == 2


# --------------------------------------------------------------------------- flags
@pytest.mark.parametrize("args", [
    ["list", "--source", "sideways"],
    ["list", "--management-group", "mg-root", "-s", SUBS[0]],
    ["list", "--management-group", "mg-root", "--source", "arm"],
    ["list", "--management-group", " "],
    ["list", "--all-subscriptions", "-s", SUBS[0]],
    ["deallocate", "--source", "nope", "--all", "--dry-run"],
    ["show", "--source", "graph", "-g", "rg", "vm"],
], ids=["unknown", "mg-and-subscription", "mg-with-arm", "mg-empty", "all-and-subscription", "action", "show-graph"])
def test_source_and_scope_flags_are_refused_before_any_request(args: list[str], make_sim: Make) -> None:
    sim = make_sim(fleet([1]))
    before = sim.stats()["requests"]
    r = vmctl(*args)
    assert r.exit_code == 2, r.output
    assert sim.stats()["requests"] == before


def test_config_inventory_source_is_validated(tmp_path: Path) -> None:
    from vmctl.errors import ConfigError

    assert parse_config({"inventory": {"source": "graph", "graph_above_subscriptions": 10}}).source == "graph"
    with pytest.raises(ConfigError):
        parse_config({"inventory": {"source": "both"}})
    (tmp_path / "bad.toml").write_text('[inventory]\nsource = "both"\n', encoding="utf-8")
    assert vmctl("list", "--config", str(tmp_path / "bad.toml")).exit_code == 2


def test_choose_source() -> None:
    cfg = Config()
    assert choose_source(None, cfg, Scope(tuple(SUBS[:3]))) == "arm"
    assert choose_source(None, cfg, Scope(tuple(SUBS))) == "graph"
    assert choose_source("arm", cfg, Scope(tuple(SUBS))) == "arm"
    assert choose_source(None, cfg, Scope(management_group="mg")) == "graph"
    assert choose_source(None, Config(source="graph"), Scope(SUBS[:1])) == "graph"


# --------------------------------------------------------------------------- pure logic on a fake
def row(vm: Vm, power: str) -> GraphRow:
    return {"id": vm.id, "name": vm.name, "resourceGroup": vm.resource_group.lower(), "subscriptionId": vm.subscription_id,
            "location": vm.location, "tags": dict(vm.tags), "vmSize": "", "powerState": f"PowerState/{power}",
            "availabilitySetId": "", "zone": "", "vmssId": "", "osDiskEphemeral": "", "hibernationEnabled": "",
            "priority": ""}


class GraphFake(FakeFleet):
    """FakeFleet plus a Resource Graph whose rows are given (a snapshot that may differ from ARM)."""

    def __init__(self, vms: list[Vm], rows: list[GraphRow], pages: list[tuple[int | None, float]] | None = None) -> None:
        super().__init__(vms)
        self.rows, self.pages = rows, list(pages or [])

    def list_subscriptions(self) -> list[tuple[str, str]]:
        return [(sub, "fake") for sub in sorted({vm.subscription_id for vm in self.vms_list})]

    @property
    def vms_list(self) -> list[Vm]:
        return [s.vm for s in self.vms.values()]

    def graph_page(self, query: str, *, subscriptions: list[str] | None = None, management_groups: list[str] | None = None,
                   skip_token: str | None = None, top: int = 1000) -> GraphPage:
        self.calls["graph_page"] += 1
        start = int(skip_token or 0)
        chunk = [r for r in self.rows if r["subscriptionId"] in (subscriptions or [])][start:start + top]
        more = start + len(chunk) < len([r for r in self.rows if r["subscriptionId"] in (subscriptions or [])])
        remaining, resets = self.pages.pop(0) if self.pages else (None, 0.0)
        return GraphPage(tuple(chunk), len(self.rows), str(start + len(chunk)) if more else None, False, remaining, resets,
                         False)


def test_recheck_vm_gone_and_tags_now_production_win_over_graph() -> None:
    """ARM's facts win: a VM ARM no longer lists is skipped (vm-not-found); one whose tags now say
    production is skipped as production."""
    gone, now_prod, fine = make_vm("gone"), make_vm("now-prod", tags={"env": "prod"}), make_vm("fine")
    fake = GraphFake([now_prod, fine], [row(gone, "running"), row(replace_tags(now_prod, {"env": "dev"}), "running"),
                                        row(fine, "running")])
    sub = fine.subscription_id
    selector = build_selector(resource_groups=[], names=[], ids=[], tags=[], exclude_tags=[], locations=[],
                              power_states=[], include_production=False)
    inv = load_graph_inventory(fake, Scope((sub,)), selector, Config(), pacer=GraphPacer(sleep=lambda s: None))
    assert [vm.production for vm in inv.vms] == [False, False, False]  # Resource Graph still says env=dev
    plan = plan_from_graph(fake, "deallocate", inv, Options(), selector, Config())
    by_name = {s.vm.name: s for s in plan.steps}
    assert by_name["gone"].skip == "vm-not-found" and by_name["gone"].source == "arm"
    assert by_name["now-prod"].skip == "production" and "production in ARM" in by_name["now-prod"].recheck
    assert by_name["fine"].acts and by_name["fine"].source == "arm"
    assert fake.calls["list_vms"] == 1


def replace_tags(vm: Vm, tags: dict[str, str]) -> Vm:
    from dataclasses import replace

    return replace(vm, tags=tags)


def test_graph_pacer_waits_for_the_window_when_the_quota_is_spent() -> None:
    slept: list[float] = []
    clock = [100.0]
    pacer = GraphPacer(scale=1.0, sleep=lambda s: slept.append(s), clock=lambda: clock[0])
    page = GraphPage((), 0, None, False, 1, 4.0, False)
    pacer.before()
    pacer.after(page)   # one left: the reserve
    pacer.before()      # waits out the window
    assert slept == [4.0]
    pacer.after(GraphPage((), 0, None, False, 10, 5.0, False))
    pacer.before()
    assert slept == [4.0] and pacer.queries == 2


def test_a_saved_plan_keeps_its_sources_and_coverage(make_sim: Make, tmp_path: Path) -> None:
    from vmctl.planner import plan_from_json

    make_sim(fleet([2, 1, 1, 1]))
    out = tmp_path / "plan.json"
    r = vmctl("deallocate", "--source", "graph", *subs_args(*SUBS), "-n", "vm0-*", "--dry-run", "--plan-out", str(out))
    assert r.exit_code == 0, r.output
    plan = plan_from_json(json.loads(out.read_text()))
    assert plan.source == "graph" and plan.coverage is not None and plan.coverage.with_vms == tuple(SUBS)
    assert {s.source for s in plan.steps} == {"arm"}
    applied = vmctl("apply", str(out), "--dry-run")  # apply re-reads its VMs through ARM, whatever made the plan
    assert applied.exit_code == 0, applied.output


def test_the_arm_source_never_loads_the_resource_graph_sdk(make_sim: Make) -> None:
    """Start-up cost: `vmctl list` on ARM imports azure.mgmt.resourcegraph not at all."""
    import os
    import subprocess
    import sys

    sim = make_sim(fleet([2]))
    code = ("import sys, runpy; sys.argv = ['vmctl', 'list', '-s', %r, '-o', 'json']\n"
            "try:\n    runpy.run_module('vmctl', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\n"
            "print(any(m.startswith('azure.mgmt.resourcegraph') for m in sys.modules), file=sys.stderr)") % SUBS[0]
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, **sim.env}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["source"] == "arm"
    assert r.stderr.strip().splitlines()[-1] == "False"
