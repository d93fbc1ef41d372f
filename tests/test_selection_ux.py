"""Selection as an operator types it: several --ids after one flag (as az takes them), typos and
empty selections refused with what was searched and the closest names, --all for the whole
subscription, subscription names. CLI -> real SDK -> simulator; nothing is mocked."""

from __future__ import annotations

import json
from typing import Any, Callable

from typer.testing import CliRunner

from conftest import SUB_A, SUB_B, SimHandle
from vmctl.cli import app
from vmctl.cli._common import spread_ids
from vmctl.selection import ids_from_text

runner = CliRunner()
Make = Callable[..., SimHandle]


def vmctl(*args: str, stdin: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=stdin)


def vm_id(rg: str, name: str, sub: str = SUB_A) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def plan_names(r: Any) -> list[str]:
    env = json.loads(r.stdout)
    assert env["kind"] == "plan", env
    return [s["vm"]["name"] for s in env["data"]["steps"]]


# --------------------------------------------------------------------------- --ids A B C
def test_spread_ids_takes_words_up_to_the_next_option_as_argparse_nargs_plus() -> None:
    assert spread_ids(["restart", "--ids", "A", "B", "-", "--yes", "C"]) == \
        ["restart", "--ids", "A", "--ids", "B", "--ids", "-", "--yes", "C"]
    assert spread_ids(["list", "--ids=A", "B", "-o", "json"]) == ["list", "--ids=A", "--ids", "B", "-o", "json"]
    assert spread_ids(["list", "--ids", "A", "--", "B"]) == ["list", "--ids", "A", "--", "B"]
    assert spread_ids(["list", "-n", "web", "x"]) == ["list", "-n", "web", "x"]  # only --ids is greedy


def test_ids_from_text_reads_tsv_lines_and_az_json() -> None:
    a, b = vm_id("rg", "a"), vm_id("rg", "b")
    assert ids_from_text(f"{a}\n\n{b}  # web\n") == [a, b]
    assert ids_from_text(json.dumps([a, b])) == [a, b]
    assert ids_from_text(json.dumps([{"id": a, "name": "a"}, {"id": b}])) == [a, b]  # az vm list output
    assert ids_from_text(json.dumps({"schema": "vmctl/v1", "kind": "vm-list", "data": [{"id": a}]})) == [a]


def test_ids_several_after_one_flag_from_vmctl_list_query(sim: SimHandle) -> None:
    """`vmctl restart --ids $(vmctl list -g rg-misc --query '[].id')`: the shell splits the ids."""
    listed = vmctl("list", "-g", "rg-app", "-n", "app-0[12]", "--query", "[].id")
    assert listed.exit_code == 0, listed.output
    ids = listed.stdout.split()  # what $(...) unquoted gives the command
    assert len(ids) == 2
    before = sim.stats()["writes"]
    r = vmctl("restart", "--ids", *ids, "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    assert plan_names(r) == ["app-01", "app-02"]
    # newline-separated in one word (quoted "$(...)"), and the JSON form, give the same plan
    r = vmctl("restart", "--ids", "\n".join(ids), "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    assert plan_names(r) == ["app-01", "app-02"]
    as_json = vmctl("list", "-g", "rg-app", "-n", "app-0[12]", "-o", "json", "--query", "[].id")
    r = vmctl("restart", "--ids", *as_json.stdout.split(), "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    assert plan_names(r) == ["app-01", "app-02"]
    assert sim.stats()["writes"] == before


def test_ids_separated_by_commas_is_refused_with_the_fix(sim: SimHandle) -> None:
    r = vmctl("restart", "--ids", f"{vm_id('rg-app', 'app-01')},{vm_id('rg-app', 'app-02')}", "--dry-run")
    assert r.exit_code == 2
    assert "not commas" in r.stderr


# --------------------------------------------------------------------------- typos and empty selections
def test_action_with_a_name_that_matches_nothing_exits_2_with_what_was_searched(sim: SimHandle) -> None:
    r = vmctl("deallocate", "-n", "nosuch", "--yes", "--no-evidence-wait")
    assert r.exit_code == 2, r.output
    assert "no VM matches the selection" in r.stderr
    assert "test-sub-a" in r.stderr and SUB_A in r.stderr and "-n 'nosuch'" in r.stderr
    assert sim.stats()["writes"] == 0


def test_action_with_a_typo_names_the_closest_vm_group_and_location(sim: SimHandle) -> None:
    r = vmctl("restart", "-n", "ap-02", "--yes")
    assert r.exit_code == 2 and "closest VM names: app-02" in r.stderr, r.output
    r = vmctl("restart", "-g", "rg-ap", "--yes")
    assert r.exit_code == 2 and "Closest groups with VMs: rg-app" in r.stderr, r.output
    r = vmctl("restart", "--location", "westeurop", "--yes")
    assert r.exit_code == 2 and "closest locations with VMs: westeurope" in r.stderr, r.output
    r = vmctl("restart", "-g", "rg-app", "--tag", "env=dve", "--yes")
    assert r.exit_code == 2 and "closest values of env: dev" in r.stderr, r.output
    assert sim.stats()["writes"] == 0


def test_one_typo_among_several_names_refuses_the_whole_run(sim: SimHandle) -> None:
    """web-01 exists, web-O2 does not: acting on web-01 alone would leave the other silently out."""
    r = vmctl("deallocate", "-n", "app-01", "-n", "app-O2", "--yes", "--no-evidence-wait")
    assert r.exit_code == 2, r.output
    assert "-n 'app-O2' matches no VM" in r.stderr and "app-02" in r.stderr
    assert sim.stats()["writes"] == 0


def test_filters_that_each_match_but_not_together_say_so(sim: SimHandle) -> None:
    r = vmctl("restart", "-g", "rg-misc", "-n", "app-01", "--dry-run")
    assert r.exit_code == 2, r.output
    assert "no VM matches all of them (-g rg-misc: 6; -n app-01: 1)" in r.stderr


def test_action_without_any_selector_is_refused_unless_all(sim: SimHandle) -> None:
    r = vmctl("restart", "--yes", "--no-evidence-wait")
    assert r.exit_code == 2, r.output
    assert "--all" in r.stderr and "no VMs selected" in r.stderr
    r = vmctl("deallocate", "--exclude-tag", "env=test", "--dry-run")  # an exclusion alone selects everything
    assert r.exit_code == 2 and "--all" in r.stderr, r.output
    assert sim.stats()["requests"] == 0  # refused before the first request, not only before the first write
    r = vmctl("restart", "--all", "-g", "rg-app", "--dry-run")
    assert r.exit_code == 2 and "cannot be combined" in r.stderr, r.output
    r = vmctl("restart", "--all", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output
    names = plan_names(r)
    assert len(names) == 14 and "app-01" in names and "broken-01" in names  # the whole subscription, planned
    assert sim.stats()["writes"] == 0


def test_list_says_on_stderr_when_a_location_or_name_matches_nothing(sim: SimHandle) -> None:
    r = vmctl("list", "--location", "westeurop")
    assert r.exit_code == 0, r.output
    assert "--location westeurop: no VM is in that location (closest locations with VMs: westeurope)" in r.stderr
    assert "no VM matches the selection" in r.stderr
    r = vmctl("list", "-n", "app-01", "-n", "nosuch", "-o", "json")
    assert r.exit_code == 0, r.output
    assert [d["name"] for d in json.loads(r.stdout)["data"]] == ["app-01"]
    assert "-n 'nosuch' matches no VM" in r.stderr
    r = vmctl("list", "-g", "rg-app", "-n", "app-01")
    assert r.exit_code == 0 and "note:" not in r.stderr, r.output


def test_missing_or_non_executable_hook_is_refused_in_dry_run(sim: SimHandle, tmp_path: Any) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    r = vmctl("restart", "-g", "rg-app", "--pre-hook", str(tmp_path / "drain.sh"), "--dry-run")
    assert r.exit_code == 2 and "does not exist" in r.stderr, r.output
    r = vmctl("restart", "-g", "rg-app", "--post-hook", str(script), "--dry-run")
    assert r.exit_code == 2 and "is not executable" in r.stderr, r.output
    assert sim.stats()["requests"] == 0


# --------------------------------------------------------------------------- subscription names
def test_subscription_names_are_accepted_wherever_ids_are(sim: SimHandle) -> None:
    r = vmctl("list", "-s", "test-sub-b", "-o", "json")
    assert r.exit_code == 0, r.output
    assert {d["subscriptionId"] for d in json.loads(r.stdout)["data"]} == {SUB_B}
    r = vmctl("restart", "-s", "TEST-SUB-A", "-s", SUB_B, "-n", "app-01", "-n", "b-1", "--dry-run", "-o", "json")
    assert r.exit_code == 0, r.output  # case-insensitive, as az account set -s; names and ids mixed
    assert plan_names(r) == ["app-01", "b-1"]
    r = vmctl("show", "-s", "test-sub-b", "-g", "rg-b", "b-2", "-o", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"][0]["vm"]["subscriptionId"] == SUB_B


def test_unknown_subscription_name_exits_2_with_the_closest_names(sim: SimHandle) -> None:
    r = vmctl("deallocate", "-s", "test-sub-c", "-g", "rg-b", "--yes")
    assert r.exit_code == 2, r.output
    assert "subscription 'test-sub-c'" in r.stderr and "closest: test-sub-b, test-sub-a" in r.stderr
    assert sim.stats()["writes"] == 0


def test_ambiguous_subscription_name_is_refused_listing_the_matches(make_sim: Make) -> None:
    vm = {"name": "rg", "vms": [{"name": "x-1"}]}
    sim = make_sim({"subscriptions": [{"id": SUB_A, "name": "shared", "resource_groups": [vm]},
                                      {"id": SUB_B, "name": "Shared", "resource_groups": [vm]}]})
    r = vmctl("restart", "-s", "shared", "-n", "x-1", "--dry-run")
    assert r.exit_code == 2, r.output
    assert "matches 2 subscriptions" in r.stderr and SUB_A in r.stderr and SUB_B in r.stderr
    assert "Give the subscription ID" in r.stderr
    assert sim.stats()["writes"] == 0
