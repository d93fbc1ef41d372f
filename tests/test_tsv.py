"""`-o tsv`: the table's cells, tab-separated, one row per line, no header, no colour, nothing cut,
as `az ... -o tsv` prints them for piping."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from conftest import BASIC
from vmctl.cli import app
from vmctl.views import LIST_COLUMNS

runner = CliRunner()


def vmctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def fleet() -> dict[str, Any]:
    f = copy.deepcopy(yaml.safe_load(BASIC.read_text(encoding="utf-8")))
    f["subscriptions"][0]["resource_groups"].append({"name": "rg-odd", "vms": [
        {"name": "odd-01", "tags": {"env": "dev", "owner": "team\tone\nline two"}}]})
    return f


def test_list_tsv_is_the_tables_cells_without_header(make_sim: Any) -> None:
    make_sim(fleet())
    r = vmctl("list", "--show-tags", "owner", "-o", "tsv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    as_csv = list(csv.reader(io.StringIO(vmctl("list", "--show-tags", "owner", "-o", "csv").stdout)))
    assert as_csv[0] == LIST_COLUMNS + ["TAG:owner"] and len(lines) == len(as_csv) - 1   # no header line
    for line, row in zip(lines, as_csv[1:]):
        fields = line.split("\t")
        assert len(fields) == len(LIST_COLUMNS) + 1
        if row[2] != "odd-01":
            assert fields == row                          # the same cells as the table, whole
    odd = next(line.split("\t") for line in lines if "\todd-01\t" in line)
    assert odd[-1] == "team\\tone\\nline two"             # a tab or newline in a value cannot break the line
    assert "\x1b" not in r.stdout                         # no colour


def test_query_rows_and_other_commands(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet())
    r = vmctl("list", "-g", "rg-app", "-n", "app-0[12]", "--query", "[].[name, resourceGroup, powerState]", "-o", "tsv")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["app-01\trg-app\trunning", "app-02\trg-app\trunning"]
    ids = vmctl("list", "-n", "app-01", "--query", "[].id", "-o", "tsv").stdout.split()
    assert len(ids) == 1 and ids[0].endswith("/virtualMachines/app-01")
    shown = vmctl("show", ids[0], "-o", "tsv")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].split("\t")[1:3] == ["rg-app", "app-01"]
    j = tmp_path / "run.jsonl"
    run = vmctl("restart", "-n", "app-01", "--yes", "--journal", str(j), "--no-evidence-wait", "-o", "tsv")
    assert run.exit_code == 0, run.output
    (row,) = run.stdout.splitlines()
    fields = row.split("\t")
    rep = json.loads(vmctl("report", str(j), "-o", "json").stdout)["data"]
    assert fields[:3] == ["test-sub-a", "rg-app", "app-01"] and rep["vms"][0]["correlationId"] in fields
    assert "succeeded" in fields


def test_config_may_choose_tsv(make_sim: Any, tmp_path: Path) -> None:
    make_sim(fleet())
    cfg = tmp_path / "vmctl.toml"
    cfg.write_text('output = "tsv"\n', encoding="utf-8")
    r = vmctl("list", "-n", "app-01", "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1 and "\tapp-01\t" in r.stdout
