"""Selection as an operator types it: several --ids after one flag (as az takes them), typos and
empty selections refused with what was searched and the closest names, --all for the whole
subscription, subscription names. CLI -> real SDK -> simulator; nothing is mocked."""

from __future__ import annotations

import json
from typing import Any, Callable

from typer.testing import CliRunner

from conftest import SUB_A, SimHandle
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
